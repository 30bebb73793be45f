"""Session exports: speed (telemetry frames/s) of each format's writer and the size of what it writes.

Usage: python benchmarks/bench_export.py [--minutes 10] [--rate 200] [--repeat 3] [--json]

The session is generated as benchmarks/bench_sessions.py generates one (a real hello from a virtual Gen0,
plausible signals, one B record per 50 ms read), loaded once with host.sessions.load, then written by each
format's writer (host/sessions/<format>.py) --repeat times; the median counts (the load is not in it: the
session's own figure, `load_frames_per_s`, is printed beside). Sizes are compared with the session file.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sessions import build, real_hello  # noqa: E402

from host.sessions import load  # noqa: E402
from host.sessions.csv import write_csv  # noqa: E402
from host.sessions.lerobot import write_lerobot  # noqa: E402
from host.sessions.mcap import write_mcap  # noqa: E402
from host.sessions.parquet import write_parquet  # noqa: E402


def binary(write, one):
    def run(s, out):
        with open(out, "wb") as f:
            write(s if one else [s], f)
    return run


def lerobot(s, out):
    out.mkdir()
    write_lerobot([s], out)


FORMATS = {"mcap": binary(write_mcap, True), "parquet": binary(write_parquet, False), "lerobot": lerobot,
           "csv": write_csv}


def size(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def measure(directory, s, fmt, repeat):
    times = []
    for k in range(repeat):
        out = directory / f"{fmt}-{k}"
        started = time.perf_counter()
        FORMATS[fmt](s, out)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"format": fmt, "frames_per_s": round(len(s) / median), "frames_per_s_best": round(len(s) / min(times)),
            "seconds": round(median, 3), "bytes": size(out), "vs_session": round(size(out) / s.path.stat().st_size, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="session length (default 10)")
    parser.add_argument("--rate", type=int, default=200, help="telemetry frames per second (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="writes to time per format; the median counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    hello = {**real_hello(), "rate_hz": args.rate, "telemetry_every": 1}
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        path = build(directory, hello, args.minutes, args.rate)[0]
        started = time.perf_counter()
        s = load(path)
        load_s = time.perf_counter() - started
        rows = [measure(directory, s, fmt, max(1, args.repeat)) for fmt in FORMATS]
        session_bytes = path.stat().st_size
    result = {"minutes": args.minutes, "rate_hz": args.rate, "telemetry_frames": len(s), "session_bytes": session_bytes,
              "load_frames_per_s": round(len(s) / load_s), "repeat": args.repeat, "formats": rows,
              "load_average": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{len(s)} telemetry frames ({args.minutes:g} min at {args.rate} Hz), session file {session_bytes / 1e6:.2f} MB, "
          f"loaded at {result['load_frames_per_s'] / 1e6:.2f}M frames/s; load average {result['load_average']}")
    print(f"{'format':10s}{'frames/s':>12s}{'best':>12s}{'MB':>10s}{'x session':>11s}")
    for r in rows:
        print(f"{r['format']:10s}{r['frames_per_s']:>12,}{r['frames_per_s_best']:>12,}{r['bytes'] / 1e6:>10.2f}{r['vs_session']:>11.3f}")
    print(f"frames/s: median of {args.repeat} writes of the loaded session (the load not included)")


if __name__ == "__main__":
    main()
