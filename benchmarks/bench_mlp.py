"""Integer MLP speed and size: µs per inference on the MicroPython VM (viper vs plain), RAM, blob
bytes, and the numpy reference's throughput.

Usage: python benchmarks/bench_mlp.py [--json]. Models: the Gen0-sized 6-32-32-2 (relu, linear out)
and the sin(x) net 1-16-16-16-1 (sigmoid, through the LUT), random weights (the time does not depend
on their values). RAM is gc.mem_free() before/after Model(blob) with the blob already read, on the
64-bit unix VM: an ESP32's objects take about half of that.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.export import quantize as Q  # noqa: E402
from host.export.reference import Reference  # noqa: E402
from tests.mpvm import run_micropython  # noqa: E402

MODELS = {"gen0_6_32_32_2": ([6, 32, 32, 2], "relu"), "sin_1_16_16_16_1": ([1, 16, 16, 16, 1], "sigmoid")}
MICROPYTHON_BENCH = """
import gc, json, time, mlp

from mp_timing import per_call

out = {}
for name, path in %r:
    blob = open(path, "rb").read()
    model = plain = None  # the previous model's RAM comes back before measuring this one
    gc.collect()
    free = gc.mem_free()
    model = mlp.Model(blob)
    gc.collect()
    ram = free - gc.mem_free()
    plain = mlp.Model(blob, False)
    x, y = bytearray(model.n_in), bytearray(model.n_out)
    values, outputs = [0.5] * model.n_in, [0.0] * model.n_out
    out[name] = {"emitter": model.emitter, "ram_bytes": ram,
                 "viper_us": per_call(lambda: model.infer_q(x, y), 2000),
                 "plain_us": per_call(lambda: plain.infer_q(x, y), 100),
                 "viper_float_edges_us": per_call(lambda: model.infer(values, outputs), 2000)}
print(json.dumps(out))
"""


def blob_for(sizes, act, seed=0):
    rng = np.random.default_rng(seed)
    layers = [{"w": rng.uniform(-1, 1, (o, i)), "b": rng.uniform(-1, 1, o), "act": act}
              for i, o in zip(sizes, sizes[1:])]
    layers[-1]["act"] = "linear"
    n_in, n_out = sizes[0], sizes[-1]
    return Q.export(layers, rng.normal(size=(1000, n_in)), np.zeros(n_in), np.ones(n_in), np.zeros(n_out),
                    np.ones(n_out), [f"in{i}" for i in range(n_in)], [f"out{j}" for j in range(n_out)], "bench")


def reference_rows_per_s(blob, rows=100_000):
    ref = Reference(blob)
    x = np.random.default_rng(1).integers(-128, 128, (rows, ref.n_in))
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        ref.infer_q(x)
        best = max(best, rows / (time.perf_counter() - t))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, (sizes, act) in MODELS.items():
            blob = blob_for(sizes, act)
            path = Path(tmp) / f"{name}.blob"
            path.write_bytes(blob)
            jobs.append((name, str(path)))
            result[name] = {"blob_bytes": len(blob), "macs": sum(a * b for a, b in zip(sizes, sizes[1:])),
                            "numpy_reference_rows_per_s": round(reference_rows_per_s(blob))}
        vm = json.loads(run_micropython(MICROPYTHON_BENCH % jobs, sys_path=[ROOT / "firmware", ROOT / "benchmarks"], timeout=300))
    for name, figures in vm.items():
        figures["viper_speedup"] = figures["plain_us"] / figures["viper_us"]
        result[name].update({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()})
    if args.json:
        print(json.dumps(result))
    else:
        for name, figures in result.items():
            print(name)
            for k, v in figures.items():
                print(f"  {k:32s} {v}")


if __name__ == "__main__":
    main()
