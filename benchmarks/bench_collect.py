"""`host collect` sustained: frames/s, link utilisation and frames lost against the virtual Gen0,
the decode speed of what was stored, and its bytes per frame against Edge Impulse-style text lines.

Two boards, each a `host sim` process of its own (so the recorder here does not share a GIL with
the VM's supervisor): the default rate (robot.json) at 115200 baud, and the fastest loop the firmware
allows (`rate` caps it at 1000 Hz; an ESP32-paced board holds far less, FIRMWARE.md) on a 921600-baud
link. Each runs the steps program for --seconds.

Usage: python benchmarks/bench_collect.py [--seconds 10] [--json]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.collect import collect  # noqa: E402
from host.firmware_files import load_robot  # noqa: E402
from host.sessions import load  # noqa: E402

BOARDS = (("stock", 115200, 200), ("fastest", 921600, 1000))


def start_board(work, label, baud, rate):
    robot = load_robot()
    robot["link"]["baud"], robot["loop"]["rate_hz"] = baud, rate
    robot_file = work / f"{label}.json"
    robot_file.write_text(json.dumps(robot))
    port = work / f"{label}.port"
    proc = subprocess.Popen([sys.executable, "-m", "host", "sim", "--preload", "--robot", str(robot_file),
                             "--baud", str(baud), "--link", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc.stdout.readline()  # "virtual Gen0 on ..." once the port exists
    time.sleep(1.0)  # boot: main.py starts streaming
    return proc, str(port)


def text_line_bytes(session):
    """Mean bytes of one Edge Impulse data-forwarder line carrying the same values (no time, no CRC)."""
    schema = session.segments[0]["schema"]
    places = [max(0, math.ceil(-math.log10(s))) if s < 1 else 0 for s in schema.scales]
    rows = zip(*(session.columns[n] for n in schema.names))
    lines = [",".join(_short(v, p) for v, p in zip(row, places)) + "\r\n" for row in rows]
    return sum(map(len, lines)) / len(lines)


def _short(value, places):
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def decode_rate(path, repeats=5):
    best = min(_timed(load, path) for _ in range(repeats))
    session = load(path)
    return len(session) / best, session


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(label, baud, rate, seconds, work):
    proc, port = start_board(work, label, baud, rate)
    try:
        summary = collect(port, program="steps", seed=1, duration=seconds, out=work, name=label, progress=False,
                          say=lambda msg: None)
    finally:
        proc.terminate()
        proc.wait(10)
    frames_per_s, session = decode_rate(summary["session"])
    program = session.columns["mode"] == 2
    t = session.columns["t"][program]
    wire = session.stats["bytes"] / len(session)
    return {
        "board": f"{rate} Hz loop, {baud} baud",
        "frames": summary["telemetry_frames"],
        "frames_per_s": round((program.sum() - 1) / (t[-1] - t[0]), 1),  # device clock, while the program ran
        "link_utilisation": summary["link_utilisation"],
        "frames_lost": summary["drops"], "crc_errors": summary["crc_errors"],
        "decode_frames_per_s": round(frames_per_s),
        "bytes_per_frame": {"wire": round(wire, 2), "session_file": round(Path(summary["session"]).stat().st_size / len(session), 2),
                            "edge_impulse_text_line": round(text_line_bytes(session), 2)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        results = [run(label, baud, rate, args.seconds, Path(tmp)) for label, baud, rate in BOARDS]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        b = r["bytes_per_frame"]
        print(f"{r['board']}: {r['frames_per_s']:.1f} frames/s sustained ({r['frames']} frames), link "
              f"{r['link_utilisation'] * 100:.1f}%, lost {r['frames_lost']}, crc errors {r['crc_errors']}")
        print(f"  stored session decodes at {r['decode_frames_per_s'] / 1e6:.2f} M frames/s; bytes per frame: "
              f"{b['wire']} on the wire (binary, seq, time, CRC), {b['session_file']} in the session file, "
              f"{b['edge_impulse_text_line']} as an Edge Impulse text line (same values, no time, no check)")


if __name__ == "__main__":
    main()
