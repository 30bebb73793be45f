"""Protocol speed: frames/s the host decodes (CPython), µs per FrameWriter.pack on the MicroPython VM.

Usage: python benchmarks/bench_protocol.py [--json]. Telemetry-sized frames: 34-byte random
payloads (about 45 bytes on the wire; ~30% of them need escaping, as real telemetry does).
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyniod_firmware import protocol as P  # noqa: E402
from tests.mpvm import run_micropython  # noqa: E402

PAYLOAD = 34
MICROPYTHON_BENCH = """
import json, struct, time
import protocol as P
w = P.FrameWriter(64)
view = w.payload_view()
clean = bytes(range(1, %(n)d + 1))
dirty = bytes([0x7e, 0x7d]) * (%(n)d // 2)
r = P.CommandReader()
line = bytearray(P.encode_command(123, 'set', ['1500', '1600']))

from mp_timing import per_call

def in_place():
    struct.pack_into('<hhhhhhhhhhhhhhhhh', view, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)
    w.pack(P.T_TELEMETRY, 1, 2, None, %(n)d)

print(json.dumps({
    'pack_in_place_us': per_call(in_place),
    'pack_copy_clean_us': per_call(lambda: w.pack(P.T_TELEMETRY, 1, 2, clean)),
    'pack_copy_all_escaped_us': per_call(lambda: w.pack(P.T_TELEMETRY, 1, 2, dirty)),
    'command_reader_us_per_line': per_call(lambda: r.feed(line)),
}))
"""


def decode_rate(n_frames=200_000, read_size=4096):
    rng = random.Random(1)
    stream = b"".join(P.encode_frame(P.T_TELEMETRY, i & 0xFFFF, i * 2000, rng.randbytes(PAYLOAD)) for i in range(n_frames))
    reads = [stream[i:i + read_size] for i in range(0, len(stream), read_size)]
    best = 0.0
    for _ in range(3):
        d = P.FrameDecoder()
        t = time.perf_counter()
        for chunk in reads:
            d.feed(chunk)
        best = max(best, n_frames / (time.perf_counter() - t))
        assert d.frames == n_frames
    return best, len(stream) / n_frames


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rate, wire_bytes = decode_rate()
    result = {"payload_bytes": PAYLOAD, "wire_bytes_per_frame": round(wire_bytes, 2),
              "cpython_decode_frames_per_s": round(rate)}
    mp = json.loads(run_micropython(MICROPYTHON_BENCH % {"n": PAYLOAD}, sys_path=[ROOT / "firmware", ROOT / "benchmarks"], timeout=120))
    result.update({"micropython_unix_" + k: round(v, 2) for k, v in mp.items()})
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:45s} {v}")


if __name__ == "__main__":
    main()
