"""The integer MLP: the device (real MicroPython VM, viper and plain kernels) against the numpy
reference bit for bit, the arithmetic's 30-bit bounds, int8 vs float error, the blob parser fuzzed.
"""
import json
import math
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.export import quantize as Q
from host.export.reference import Reference
from polyniod_firmware import mlp
from tests.mpvm import run_micropython

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = ([1, 16, 16, 16, 1], [6, 32, 32, 2], [2, 8, 1])

VM_INFER_Q = """
import json, mlp
for job in json.loads(open(%r).read()):
    blob = open(job["blob"], "rb").read()
    xs = open(job["x"], "rb").read()
    m = mlp.Model(blob, job["viper"])
    rows = len(xs) // m.n_in
    x, y, ys = bytearray(m.n_in), bytearray(m.n_out), bytearray(rows * m.n_out)
    for r in range(rows):
        x[:] = xs[r * m.n_in:(r + 1) * m.n_in]
        m.infer_q(x, y)
        ys[r * m.n_out:(r + 1) * m.n_out] = y
    open(job["out"], "wb").write(ys)
    print(m.emitter)
"""


def random_layers(sizes, act, rng, scale=1.0):
    return [{"w": rng.uniform(-scale, scale, (n_out, n_in)), "b": rng.uniform(-scale, scale, n_out), "act": act}
            for n_in, n_out in zip(sizes, sizes[1:])]


def export_random(sizes, act, rng):
    layers = random_layers(sizes, act, rng)
    n_in, n_out = sizes[0], sizes[-1]
    return Q.export(layers, rng.normal(size=(300, n_in)), rng.normal(size=n_in), rng.uniform(0.5, 2, n_in),
                    rng.normal(size=n_out), rng.uniform(0.5, 2, n_out), [f"in{i}" for i in range(n_in)],
                    [f"out{j}" for j in range(n_out)], "random")


def int8_rows(n_in, rows, rng):
    """Random int8 vectors, led by the extremes."""
    x = rng.integers(-128, 128, (rows, n_in))
    x[0], x[1], x[2] = -128, 127, 0
    x[3, ::2], x[3, 1::2] = -128, 127
    return x.astype(np.int8)


def device_infer_q(tmp_path, cases, viper_modes=(True, False)):
    """[(blob, int8 inputs [rows, n_in])] -> per case {emitter: int8 outputs [rows, n_out]} from the VM."""
    jobs = []
    for k, (blob, x) in enumerate(cases):
        (tmp_path / f"m{k}.blob").write_bytes(blob)
        (tmp_path / f"x{k}.bin").write_bytes(np.ascontiguousarray(x, dtype=np.int8).tobytes())
        for viper in viper_modes:
            jobs.append({"blob": str(tmp_path / f"m{k}.blob"), "x": str(tmp_path / f"x{k}.bin"),
                         "out": str(tmp_path / f"y{k}{viper:d}.bin"), "viper": viper, "case": k})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    emitters = run_micropython(VM_INFER_Q % str(tmp_path / "jobs.json"), sys_path=[FIRMWARE], timeout=120).split()
    out = [{} for _ in cases]
    for job, emitter in zip(jobs, emitters):
        n_out = Reference(cases[job["case"]][0]).n_out
        out[job["case"]][emitter] = np.frombuffer(Path(job["out"]).read_bytes(), dtype=np.int8).reshape(-1, n_out)
    return out


# --- the arithmetic -----------------------------------------------------------------------------

def oracle_requantize(acc, m, t, zp, qmin, qmax):
    """Round half up of acc * m / 2**(15 + t) in unbounded ints, as a 64-bit TFLM kernel would."""
    return min(max(((acc * m + (1 << (14 + t))) >> (15 + t)) + zp, qmin), qmax)


ACC_BOUND = mlp.BIAS_LIMIT + mlp.MAX_WIDTH * 128 * 128  # |bias| + n_in * |w| * |x|
requant_args = st.tuples(st.integers(-ACC_BOUND, ACC_BOUND), st.integers(0, mlp.MULT_LIMIT - 1),
                         st.integers(mlp.SHIFT_MIN, mlp.SHIFT_MAX), st.integers(-128, 127),
                         st.integers(-128, 127), st.integers(-128, 127))


@fuzz
@given(requant_args)
def test_requantize_is_exact_rounding(args):
    acc, m, t, zp, a, b = args
    qmin, qmax = min(a, b), max(a, b)
    want = oracle_requantize(acc, m, t, zp, qmin, qmax)
    assert mlp.requantize(acc, m, t, zp, qmin, qmax) == want
    assert mlp.requantize(np.array([acc, acc]), np.array([m, m]), np.array([t, t]), zp, qmin, qmax).tolist() == [want, want]
    wide = 1 << 29  # without the clamp: the rounding itself
    assert mlp.requantize(acc, m, t, 0, -wide, wide) == ((acc * m + (1 << (14 + t))) >> (15 + t))


class Traced(int):
    """An int that records the largest magnitude any result of arithmetic on it reaches."""
    peak = 0


def _traced(op):
    def traced(*args):
        v = Traced(op(*map(int, args)))
        Traced.peak = max(Traced.peak, abs(v))
        return v
    return traced


for _name in ("add", "sub", "mul", "rshift", "lshift", "and", "or", "xor"):
    for _side in ("__%s__", "__r%s__"):
        setattr(Traced, _side % _name, _traced(getattr(int, _side % _name)))
Traced.__invert__ = _traced(int.__invert__)


def test_requantize_intermediates_stay_below_2_30():
    """Every intermediate of REQUANTIZE at the corners of the allowed ranges fits a 31-bit small int."""
    rng = random.Random(4)
    corners = [(acc, m, t, zp, qmin, qmax)
               for acc in (-ACC_BOUND, -ACC_BOUND + 1, -1, 0, 32767, ACC_BOUND - 1, ACC_BOUND)
               for m in (0, 1, mlp.MULT_LIMIT - 1) for t in (mlp.SHIFT_MIN, 15, mlp.SHIFT_MAX)
               for zp, qmin, qmax in ((-128, -128, 127), (127, -128, 127), (0, 0, 0))]
    corners += [(rng.randint(-ACC_BOUND, ACC_BOUND), rng.randrange(mlp.MULT_LIMIT), rng.randint(1, 29),
                 rng.randint(-128, 127), -128, rng.randint(-128, 127)) for _ in range(2000)]
    Traced.peak = 0
    for args in corners:
        space = dict(zip(("acc", "m", "t", "zp", "qmin", "qmax"), map(Traced, args)))
        exec(mlp.REQUANTIZE, space)
        assert space["q"] == oracle_requantize(*args)
    assert (1 << 29) < Traced.peak < (1 << 30)  # near the limit, and under it
    assert ACC_BOUND < (1 << 29)


def test_requantize_on_the_vm_matches_the_oracle():
    rng = random.Random(5)
    cases = [(rng.randint(-ACC_BOUND, ACC_BOUND), rng.randrange(mlp.MULT_LIMIT), rng.randint(1, 29),
              rng.randint(-128, 127), -128, 127) for _ in range(3000)]
    cases += [(s * ACC_BOUND, mlp.MULT_LIMIT - 1, t, 0, -128, 127) for s in (-1, 1) for t in (1, 29)]
    code = "import json, mlp\nprint(json.dumps([mlp.requantize(*c) for c in json.loads(%r)]))" % json.dumps(cases)
    got = json.loads(run_micropython(code, sys_path=[FIRMWARE]))
    assert got == [oracle_requantize(*c) for c in cases]


def test_multiplier_keeps_15_bits():
    for real in np.geomspace(2.0 ** -28, 0.49, 500):
        m, shift = Q.multiplier(real)
        assert 2 ** 14 <= m < 2 ** 15 and 1 <= shift <= 29
        assert abs(m / 2.0 ** (15 + shift) - real) <= real * 2.0 ** -15
    m, shift = Q.multiplier(1e-12)  # below 15 bits at the largest shift: fewer bits, still nearest
    assert shift == 29 and m == round(1e-12 * 2.0 ** 44)
    assert Q.multiplier(0) == (0, 29)
    with pytest.raises(ValueError, match="0.5"):
        Q.multiplier(0.5)


# --- device vs reference ------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "linear"])
def test_device_equals_reference_bit_for_bit(tmp_path, act):
    rng = np.random.default_rng(["relu", "tanh", "sigmoid", "linear"].index(act))
    cases = [(export_random(sizes, act, rng), int8_rows(sizes[0], 1000, rng)) for sizes in SHAPES]
    for (blob, x), got in zip(cases, device_infer_q(tmp_path, cases)):
        want = Reference(blob).infer_q(x)
        assert set(got) == {"viper", "plain"}
        assert np.array_equal(got["viper"], want) and np.array_equal(got["plain"], want)
        assert len(np.unique(want)) > 10  # the outputs vary: not a constant net
    blob, x = cases[1]  # the same module under CPython runs its plain kernel: equal too
    cpython = mlp.Model(blob)
    assert cpython.emitter == "plain"
    y = bytearray(cpython.n_out)
    for row, want in zip(x[:30], Reference(blob).infer_q(x[:30])):
        cpython.infer_q(bytearray(row.tobytes()), y)
        assert bytes(y) == want.tobytes()


def edge_layers(rng):
    """Integer layers at the parser's limits: 256 inputs, weights -128/127, |bias| just under
    BIAS_LIMIT, the largest multiplier with the smallest and largest shifts, negative zero points,
    channels of zero weights, an arbitrary LUT."""
    n0, n1, n2 = 256, 64, 8
    w0 = np.empty((n1, n0), dtype=np.int64)
    w0[0::4], w0[1::4] = -128, 127
    w0[2::4] = np.where(np.arange(n0) % 2, 127, -128)
    w0[3::4] = rng.integers(-128, 128, (n1 // 4, n0))
    top = mlp.BIAS_LIMIT - 1
    bias0 = [(top, -top, 0, int(rng.integers(-top, top)))[c % 4] * (1 if c % 8 < 4 else -1) for c in range(n1)]
    mult0 = [(mlp.MULT_LIMIT - 1, 0, 1, int(rng.integers(0, mlp.MULT_LIMIT)))[(c // 4) % 4] for c in range(n1)]
    shift0 = [(1, 29, 15, 28, 2)[(c // 16 + c) % 5] for c in range(n1)]
    w1 = rng.integers(-128, 128, (n2, n1))
    w1[::2] = 0
    w2 = rng.integers(-128, 128, (2, n2))
    return [
        mlp.Layer(n0, n1, "linear", -128, -77, -128, 127, -77, 0.5, 0.25,
                  bias0, mult0, shift0, w0.astype(np.int8).tobytes()),
        mlp.Layer(n1, n2, "tanh", -77, -3, -128, 127, 100, 0.25, 0.125,
                  [int(v) for v in rng.integers(-1000, 1000, n2)], [int(v) for v in rng.integers(0, 2 ** 15, n2)],
                  [int(v) for v in rng.integers(5, 20, n2)], w1.astype(np.int8).tobytes(),
                  rng.integers(-128, 128, 256).astype(np.int8).tobytes()),
        mlp.Layer(n2, 2, "relu", 100, -100, -100, 90, -100, 0.125, 1.5,
                  [-50000, 70000], [30000, 20000], [3, 4], w2.astype(np.int8).tobytes()),
    ]


def oracle_infer(layers, x):
    """The format's arithmetic written out in unbounded Python ints; also the largest |acc| seen."""
    peak, x = 0, [int(v) for v in x]
    for L in layers:
        w = np.frombuffer(bytes(L.weights), dtype=np.int8).reshape(L.n_out, L.n_in).tolist()
        lut = None if L.lut is None else np.frombuffer(bytes(L.lut), dtype=np.int8).tolist()
        out = []
        for c in range(L.n_out):
            acc = L.bias[c] + sum(wi * xi for wi, xi in zip(w[c], x))
            peak = max(peak, abs(acc))
            q = oracle_requantize(acc, L.mult[c], L.shift[c], L.zp, L.qmin, L.qmax)
            out.append(q if lut is None else lut[q + 128])
        x = out
    return x, peak


def test_edges_saturated_accumulators_zero_weights_negative_zero_points(tmp_path):
    rng = np.random.default_rng(7)
    layers = edge_layers(rng)
    blob = Q.pack(layers, {"task": "edge", "inputs": [str(i) for i in range(256)], "outputs": ["a", "b"]},
                  [0.0] * 256, [1.0] * 256, [0.0, 0.0], [1.0, 1.0])
    x = int8_rows(256, 300, rng)
    x[4] = np.where(np.arange(256) % 2, -128, 127)  # against the alternating channels: the other extreme
    want = Reference(blob).infer_q(x)
    oracle = [oracle_infer(layers, row) for row in x]
    assert want.tolist() == [y for y, _ in oracle]
    assert max(peak for _, peak in oracle) == mlp.BIAS_LIMIT - 1 + 256 * 128 * 128  # the bound, reached
    got = device_infer_q(tmp_path, [(blob, x)])[0]
    assert np.array_equal(got["viper"], want) and np.array_equal(got["plain"], want)


def test_zero_weights_and_extreme_inputs_through_the_exporter(tmp_path):
    rng = np.random.default_rng(8)
    layers = random_layers([3, 8, 2], "relu", rng)
    layers[0]["w"][:] = 0.0  # all-zero first layer: the output is the biases' image, whatever the input
    calibration = rng.uniform(-5, -1, (100, 3))  # all negative: the input zero point is at the top
    blob = Q.export(layers, calibration, [0] * 3, [1] * 3, [0, 0], [1, 1], ["a", "b", "c"], ["y", "z"], "zero")
    spec = mlp.parse(blob)
    assert spec.layers[0].in_zp >= 126 and spec.layers[0].zp == -128
    x = int8_rows(3, 200, rng)
    want = Reference(blob).infer_q(x)
    assert (want == want[0]).all()
    got = device_infer_q(tmp_path, [(blob, x)])[0]
    assert np.array_equal(got["viper"], want) and np.array_equal(got["plain"], want)


def test_output_range_widens_where_the_multiplier_would_reach_one_half():
    """Inputs that always cancel give a zero output range: the exporter widens it instead of failing."""
    layers = [{"w": np.array([[1.0, -1.0], [2.0, 0.5]]), "b": np.zeros(2), "act": "linear"}]
    calibration = np.repeat(np.linspace(-1, 1, 50)[:, None], 2, axis=1) * [1, 1]
    layers[0]["w"][1] = [1.0, -1.0]
    blob = Q.export(layers, calibration, [0, 0], [1, 1], [0, 0], [1, 1], ["a", "b"], ["y", "z"], "cancel")
    layer = mlp.parse(blob).layers[0]
    assert all(m / 2.0 ** (15 + s) < 0.5 for m, s in zip(layer.mult, layer.shift))
    x = int8_rows(2, 50, np.random.default_rng(9))
    model, y = mlp.Model(blob), bytearray(2)
    for row, want in zip(x, Reference(blob).infer_q(x)):
        model.infer_q(bytearray(row.tobytes()), y)
        assert bytes(y) == want.tobytes()


# --- int8 vs float on sin(x) --------------------------------------------------------------------

def train_sin(act, steps=1000, seed=0):
    """The classic 1-16-16-16-1 sin(x) net on [-pi, pi], uniform(-0.5, 0.5) init, Adam."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared 2-core box
    try:
        torch.manual_seed(seed)
        x = torch.linspace(-math.pi, math.pi, 256, dtype=torch.float64).unsqueeze(1)
        mean, std = float(x.mean()), float(x.std())
        y = torch.sin(x) / math.sqrt(0.5)  # normalised target (std of sin on a full period)
        net = [torch.nn.Linear(a, b, dtype=torch.float64) for a, b in ((1, 16), (16, 16), (16, 16), (16, 1))]
        for lin in net:
            torch.nn.init.uniform_(lin.weight, -0.5, 0.5)
            torch.nn.init.uniform_(lin.bias, -0.5, 0.5)
        f = {"relu": torch.relu, "sigmoid": torch.sigmoid}[act]
        opt = torch.optim.Adam([p for lin in net for p in lin.parameters()], lr=0.01)
        for _ in range(steps):
            z = (x - mean) / std
            for lin in net[:-1]:
                z = f(lin(z))
            loss = ((net[-1](z) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    layers = [{"w": lin.weight.detach().numpy(), "b": lin.bias.detach().numpy(), "act": act} for lin in net]
    layers[-1]["act"] = "linear"
    return layers, mean, std


VM_SIN = """
import array, mlp
m = mlp.Model(open(%r, "rb").read())
xs = array.array("d", open(%r, "rb").read())
ys, out = array.array("d", bytes(8 * len(xs))), [0.0]
clipped = 0
for i in range(len(xs)):
    clipped += m.infer([xs[i]], out)
    ys[i] = out[0]
open(%r, "wb").write(ys)
print(m.task, m.inputs, m.outputs, clipped)
"""


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_sin_int8_error_is_small(tmp_path, act):
    """Bound: the int8 net stays within 0.06 of the float net (6% of sin's amplitude; rms 2% of its std)."""
    layers, mean, std = train_sin(act)
    x = np.linspace(-math.pi, math.pi, 1001)[:, None]
    blob = Q.export(layers, (x - mean) / std, [mean], [std], [0.0], [math.sqrt(0.5)], ["x"], ["sin_x"], "sin")
    err = Q.int8_error(layers, blob, x)
    assert err["n"] == 1001 and err["max_abs"][0] < 0.06 and err["rel_rms"][0] < 0.02, err
    ref = Reference(blob).infer(x)[:, 0]
    assert np.abs(ref - np.sin(x[:, 0])).max() < 0.08
    # on the VM, through the float edges: the unix VM computes them in double as numpy does
    grid = np.linspace(-math.pi, math.pi, 201)
    (tmp_path / "sin.blob").write_bytes(blob)
    (tmp_path / "x.bin").write_bytes(grid.astype("<f8").tobytes())
    said = run_micropython(VM_SIN % (str(tmp_path / "sin.blob"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")),
                           sys_path=[FIRMWARE])
    assert said.split() == ["sin", "['x']", "['sin_x']", "0"]
    got = np.frombuffer((tmp_path / "y.bin").read_bytes(), dtype="<f8")
    assert np.array_equal(got, Reference(blob).infer(grid[:, None])[:, 0])


# --- the blob: format, limits, fuzzing ----------------------------------------------------------

BLOB = export_random([6, 32, 32, 2], "tanh", np.random.default_rng(11))


def reseal(blob):
    """Make a (mutated) blob's size, model id and CRC consistent again, so the parser looks inside."""
    blob = bytearray(blob)
    if len(blob) < mlp.HEADER_SIZE + 4:
        return bytes(blob)
    struct.pack_into("<II", blob, 8, len(blob), zlib.crc32(blob[mlp.HEADER_SIZE:-4]))
    struct.pack_into("<I", blob, len(blob) - 4, zlib.crc32(blob[:-4]))
    return bytes(blob)


def parse_result(blob):
    """('ok', model id) or (error kind, message) -- and nothing else may escape the parser."""
    try:
        return "ok", mlp.parse(blob).model_id
    except mlp.BlobError as e:
        assert e.kind in ("E_ARG", "E_VERSION", "E_TOO_BIG", "E_CHECK") and str(e)
        return e.kind, str(e)


def test_pack_and_parse_round_trip():
    spec = mlp.parse(BLOB)
    assert Q.pack(spec.layers, spec.meta, spec.in_mean, spec.in_std, spec.out_mean, spec.out_std) == BLOB
    assert spec.model_id == zlib.crc32(BLOB[mlp.HEADER_SIZE:-4]) and spec.size == len(BLOB)
    assert (spec.task, spec.inputs, spec.outputs) == ("random", [f"in{i}" for i in range(6)], ["out0", "out1"])
    assert [L.act for L in spec.layers] == ["tanh"] * 3 and all(len(L.lut) == 256 for L in spec.layers)


@fuzz
@given(st.binary(max_size=600))
def test_random_bytes_are_refused(data):
    assert parse_result(data)[0] != "ok"
    header = struct.pack(mlp.HEADER, mlp.MAGIC, mlp.VERSION, 1, 0, len(data) + 20, 0)
    assert parse_result(header + data + b"\0\0\0\0")[0] == "E_CHECK"  # the CRC catches it


@fuzz
@given(st.integers(0, len(BLOB) - 1))
def test_truncated_blobs_are_refused(n):
    kind, why = parse_result(BLOB[:n])
    assert kind == "E_CHECK" and "truncated" in why


@fuzz
@given(st.lists(st.integers(0, 8 * len(BLOB) - 1), min_size=1, max_size=3, unique=True))
def test_bit_flips_are_never_accepted(bits):
    blob = bytearray(BLOB)
    for b in bits:
        blob[b // 8] ^= 1 << (b % 8)
    assert parse_result(bytes(blob))[0] != "ok"


def mutate(rng, blob):
    """Random byte changes, insertions or deletions anywhere, resealed."""
    blob = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(blob))
        how = rng.random()
        if how < 0.6:
            blob[at] = rng.randrange(256)
        elif how < 0.8:
            blob[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del blob[at:at + rng.randint(1, 8)]
    return reseal(blob)


@fuzz
@given(st.integers(0, 2 ** 32 - 1))
def test_resealed_mutations_are_refused_or_run_as_the_reference(seed):
    blob = mutate(random.Random(seed), BLOB)
    kind, _ = parse_result(blob)
    if kind == "ok":  # a consistent blob after all: it must run, and identically on both sides
        model, ref = mlp.Model(blob), Reference(blob)
        x = int8_rows(model.n_in, 5, np.random.default_rng(seed))
        y = bytearray(model.n_out)
        for row, want in zip(x, ref.infer_q(x)):
            model.infer_q(bytearray(row.tobytes()), y)
            assert bytes(y) == want.tobytes()


VM_PARSE = """
import json, struct, mlp
data = open(%r, "rb").read()
at, out = 0, []
while at < len(data):
    n = struct.unpack_from("<I", data, at)[0]
    try:
        out.append(["ok", mlp.parse(data[at + 4:at + 4 + n]).model_id])
    except mlp.BlobError as e:
        out.append([e.kind, str(e)])
    at += 4 + n
print(json.dumps(out))
"""


def test_the_vm_parser_decides_as_cpython(tmp_path):
    rng = random.Random(12)
    blobs = [mutate(rng, BLOB) for _ in range(300)] + [BLOB[:n] for n in range(0, len(BLOB), 97)]
    blobs += [bytes(BLOB[:k]) + bytes([BLOB[k] ^ 4]) + BLOB[k + 1:] for k in range(0, len(BLOB), 101)]
    (tmp_path / "blobs.bin").write_bytes(b"".join(struct.pack("<I", len(b)) + b for b in blobs))
    got = json.loads(run_micropython(VM_PARSE % str(tmp_path / "blobs.bin"), sys_path=[FIRMWARE]))
    want = [list(parse_result(b)) for b in blobs]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g for g in got if g[0] == "ok"] == [w for w in want if w[0] == "ok"]
    assert sum(g[0] == "ok" for g in got) < len(blobs) // 2 < sum(g[0] != "ok" for g in got)


def header_variant(**fields):
    magic, version, n_layers, reserved, size, model_id = struct.unpack_from(mlp.HEADER, BLOB, 0)
    values = dict(magic=magic, version=version, n_layers=n_layers, reserved=reserved)
    values.update(fields)
    return reseal(struct.pack(mlp.HEADER, values["magic"], values["version"], values["n_layers"],
                              values["reserved"], size, model_id) + BLOB[mlp.HEADER_SIZE:])


def test_refusals_say_why():
    assert parse_result(header_variant(magic=b"XMLP")) == ("E_ARG", "not a model blob (magic b'XMLP', expected b'PMLP')")
    kind, why = parse_result(header_variant(version=2))
    assert kind == "E_VERSION" and "version 2" in why and "version 1" in why
    assert parse_result(header_variant(n_layers=9))[0] == "E_TOO_BIG"
    assert parse_result(header_variant(n_layers=2))[0] == "E_CHECK"  # the last layer read as the I/O section
    big = bytearray(BLOB)
    struct.pack_into("<I", big, 8, mlp.MAX_BLOB + 1)
    assert parse_result(bytes(big))[0] == "E_TOO_BIG"
    assert parse_result(BLOB + b"\0") == ("E_CHECK", "1 bytes after the blob's announced %d" % len(BLOB))
    act = bytearray(BLOB)
    act[mlp.HEADER_SIZE + 4] = 7  # layer 0's activation code
    kind, why = parse_result(reseal(act))
    assert kind == "E_VERSION" and "unknown activation code 7" in why
    def square(n):
        return Q.pack([mlp.Layer(n, n, "linear", 0, 0, -128, 127, 0, 1.0, 1.0, [0] * n, [1] * n, [1] * n, bytes(n * n))],
                      {"task": "t", "inputs": ["x"] * n, "outputs": ["y"] * n}, [0.0] * n, [1.0] * n, [0.0] * n, [1.0] * n)

    assert len(square(160)) <= mlp.MAX_BLOB
    assert parse_result(square(160)) == ("E_TOO_BIG", "more than %d weights" % mlp.MAX_WEIGHTS)
    kind, why = parse_result(square(200))
    assert kind == "E_TOO_BIG" and why.endswith("over the %d-byte limit" % mlp.MAX_BLOB)


def test_export_refuses_bad_float_layers():
    rng = np.random.default_rng(2)
    good = random_layers([2, 4, 1], "relu", rng)
    args = (rng.normal(size=(10, 2)), [0, 0], [1, 1], [0], [1], ["a", "b"], ["y"], "t")
    for change, message in (
            (lambda L: L[0].update(act="gelu"), "activation 'gelu'"),
            (lambda L: L[1].update(w=np.ones((1, 3))), "takes 3 inputs"),
            (lambda L: L[0].update(b=np.ones(3)), "w must be"),
            (lambda L: L[0]["w"].__setitem__((0, 0), np.nan), "NaN"),
            (lambda L: L.__setitem__(0, {"w": np.ones((300, 2)), "b": np.ones(300), "act": "relu"}), "widest"),
    ):
        layers = [dict(L, w=L["w"].copy()) for L in good]
        change(layers)
        with pytest.raises(ValueError, match=message):
            Q.export(layers, *args)
    with pytest.raises(ValueError, match="in_std must be 2 finite numbers, all > 0"):
        Q.export(good, args[0], [0, 0], [1, 0], *args[3:])
    with pytest.raises(ValueError, match="1 input and 1 output names"):
        Q.export(good, *args[:5], ["a"], ["y"], "t")
    with pytest.raises(ValueError, match="calibration"):
        Q.export(good, np.full((4, 2), np.inf), *args[1:])
    with pytest.raises(ValueError, match="bytes of JSON"):
        Q.export(good, *args, meta={"notes": "x" * 3000})


# --- the device executor itself -----------------------------------------------------------------

VM_ALLOC = """
import gc, mlp

def allocated(m, n):  # locals only: a new global would grow the module's dict
    x, y = bytearray(m.n_in), bytearray(m.n_out)
    m.infer_q(x, y)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for i in range(n):
        x[i %% m.n_in] = i & 0xFF
        m.infer_q(x, y)
    after = gc.mem_alloc()
    gc.enable()
    return after - before

out = []
for path in %r:
    blob = open(path, "rb").read()
    for viper in (True, False):
        m = mlp.Model(blob, viper)
        out.append([m.emitter, allocated(m, 300)])
print(out)
"""


def test_no_allocation_per_inference(tmp_path):
    paths = []
    for k, (sizes, act) in enumerate((([6, 32, 32, 2], "relu"), ([1, 16, 16, 16, 1], "sigmoid"))):
        paths.append(str(tmp_path / f"{k}.blob"))
        Path(paths[-1]).write_bytes(export_random(sizes, act, np.random.default_rng(k)))
    said = run_micropython(VM_ALLOC % paths, sys_path=[FIRMWARE])
    assert said.split("\n")[0] == str([["viper", 0], ["plain", 0]] * 2)


VM_FALLBACK = """
import mlp
blob = open(%r, "rb").read()
print(mlp.viper_layer is not None, mlp.compile_kernel("@micropython.no_such_emitter"),
      mlp.Model(blob).emitter, mlp.Model(blob, False).emitter)
try:
    mlp.Model(blob).infer_q(bytearray(1), bytearray(2))
except ValueError as e:
    print(e)
"""


def test_viper_where_available_plain_fallback_otherwise(tmp_path):
    """A build without native emitters refuses the decorator at compile time (SyntaxError) as this
    VM refuses an unknown one: the module then runs the plain kernel. Short buffers are refused."""
    (tmp_path / "m.blob").write_bytes(BLOB)
    said = run_micropython(VM_FALLBACK % str(tmp_path / "m.blob"), sys_path=[FIRMWARE]).split("\n")
    assert said[0] == "True None viper plain"
    assert said[1] == "infer_q needs 6 input and 2 output bytes"
    assert mlp.viper_layer is None and mlp.Model(BLOB).emitter == "plain"  # CPython
