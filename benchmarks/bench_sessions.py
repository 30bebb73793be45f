"""Session storage: load speed (telemetry frames/s) and bytes per frame, on the wire and on disk.

Usage: python benchmarks/bench_sessions.py [--minutes 10] [--rate 200 500] [--repeat 7] [--json]

The schema comes from a real hello (a virtual Gen0 is started for it). For each rate a session is
generated: plausible signals packed by that schema, framed with protocol.encode_frame, one B record
per 50 ms read (as the link reads), written with SessionWriter, then loaded --repeat times with
host.sessions.load. The figure is the median load (other processes on a shared machine only ever add
time, so the best is shown too); 200 Hz (10 frames a record) is the headline, as each record costs a
fixed overhead. Bytes per frame are compared with an Edge-Impulse-style text line carrying the same
values (comma separated, one line per sample, no timestamp, no sequence number, no check).
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyniod_firmware import protocol as P  # noqa: E402

from host.link.client import Link  # noqa: E402
from host.link.schema import TelemetrySchema  # noqa: E402
from host.sessions import SessionWriter, load  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402

READ_S = 0.05  # the link's serial read timeout: one read (one B record) per 50 ms


def real_hello():
    board = VirtualGen0(preload=True)
    board.start()
    try:
        if not board.wait_ready(30):
            raise SystemExit(f"the virtual Gen0 did not boot: {board.failed}")
        with Link(board.port) as link:
            return dict(link.connect())  # the hello as sessions store it: a plain JSON object
    finally:
        board.stop()


def signals(schema, n, rate_hz, seed=0):
    """Raw integers per field: slow sinusoids plus noise, like a sweep program's telemetry."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate_hz
    raw = np.zeros(n, dtype=schema.numpy_dtype())
    for i, (name, field) in enumerate(zip(schema.names, schema.fields)):
        info = np.iinfo(raw[name].dtype)
        wave = np.sin(2 * math.pi * (0.2 + 0.1 * i) * t) + 0.05 * rng.standard_normal(n)
        amplitude = min(info.max, 3000) / 2
        raw[name] = np.clip(np.round(amplitude + amplitude * 0.9 * wave) - (amplitude if info.min < 0 else 0), info.min, info.max)
    return raw


def text_line_bytes(schema, raw):
    """Mean bytes of `v1,v2,...\\r\\n` lines with each value in its unit, at the decimals its scale needs."""
    decimals = [max(0, math.ceil(-math.log10(scale))) if scale < 1 else 0 for scale in schema.scales]
    sample = raw[:2000]
    lines = [",".join(f"{int(row[i]) * scale:.{d}f}" for i, (scale, d) in enumerate(zip(schema.scales, decimals))) + "\r\n"
             for row in sample]
    return sum(map(len, lines)) / len(lines)


def build(directory, hello, minutes, rate_hz):
    schema = TelemetrySchema.from_hello(hello)
    n = int(minutes * 60 * rate_hz)
    raw = signals(schema, n, rate_hz)
    payloads = raw.tobytes()
    per_read = max(1, int(rate_hz * READ_S))
    t0 = time.time()
    started = time.perf_counter()
    with SessionWriter(directory, "bench", {"hello": hello, "program": {"name": "synthetic", "seed": 0}}) as writer:
        writer.append_bytes(t0, P.encode_frame(P.T_HELLO, 0, 0, json.dumps(hello).encode()))
        wire = 0
        for first in range(0, n, per_read):
            chunk = b"".join(P.encode_frame(P.T_TELEMETRY, (1 + i) & 0xFFFF, i * 1000000 // rate_hz,
                                            payloads[i * schema.size:(i + 1) * schema.size])
                             for i in range(first, min(first + per_read, n)))
            wire += len(chunk)
            writer.append_bytes(t0 + first / rate_hz, chunk)
    return writer.path, schema, raw, wire / n, time.perf_counter() - started


HEADLINE_HZ = 200


def measure(directory, hello, minutes, rate_hz, repeat):
    """Figures of one generated session at rate_hz, loaded `repeat` times."""
    path, schema, raw, wire_per_frame, write_s = build(directory, hello, minutes, rate_hz)
    n = len(raw)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        session = load(path)
        times.append(time.perf_counter() - started)
    assert len(session) == n and session.stats["drops"] == 0 and session.stats["crc_errors"] == 0
    assert np.array_equal(session.columns[schema.names[0]], raw[schema.names[0]])
    file_bytes = path.stat().st_size
    path.unlink()
    median, best = statistics.median(times), min(times)
    return {
        "rate_hz": rate_hz, "telemetry_frames": n, "fields": len(schema.names), "payload_bytes": schema.size,
        "load_s": round(median, 4), "load_s_best": round(best, 4),
        "load_frames_per_s": round(n / median), "load_frames_per_s_best": round(n / best),
        "write_frames_per_s": round(n / write_s),
        "wire_bytes_per_frame": round(wire_per_frame, 2),
        "text_line_bytes_per_frame": round(text_line_bytes(schema, raw), 2),
        "file_bytes_per_frame": round(file_bytes / n, 2),
        "file_mb": round(file_bytes / 1e6, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="session length (default 10)")
    parser.add_argument("--rate", type=int, nargs="+", default=[HEADLINE_HZ, 500],
                        help=f"telemetry frames per second, one session each (default {HEADLINE_HZ} 500)")
    parser.add_argument("--repeat", type=int, default=7, help="loads to time per session; the median counts (default 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    hello = real_hello()
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure(Path(directory), hello, args.minutes, rate, max(1, args.repeat)) for rate in args.rate]
    headline = next((r for r in rows if r["rate_hz"] == HEADLINE_HZ), rows[0])
    result = {
        "load_frames_per_s": headline["load_frames_per_s"], "rate_hz": headline["rate_hz"],
        "minutes": args.minutes, "repeat": args.repeat, "rates": rows,
        "load_average": round(os.getloadavg()[0], 2),  # other processes on this machine slow every figure
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"load at {headline['rate_hz']} Hz: {headline['load_frames_per_s'] / 1e6:.2f}M telemetry frames/s "
          f"(median of {args.repeat} loads of a {args.minutes:g}-minute session; best {headline['load_frames_per_s_best'] / 1e6:.2f}M; "
          f"load average {result['load_average']})")
    print()
    keys = [k for k in rows[0] if k != "rate_hz"]
    print(f"{'rate_hz':28s}" + "".join(f"{r['rate_hz']:>12}" for r in rows))
    for key in keys:
        print(f"{key:28s}" + "".join(f"{r[key]:>12}" for r in rows))
    print("load_s: median of the loads; wire frames carry seq, device time and a CRC; text lines carry none of them")


if __name__ == "__main__":
    main()
