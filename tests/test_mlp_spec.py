"""MLP.md's blob spec, held to the code: every check in its table broken on purpose (in the table's
order, with the table's kind), what is deliberately not checked, the packing, and meta's bytes.

The table is read from MLP.md itself, so the document and `mlp.parse` cannot drift apart.
"""
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from host.export import quantize as Q
from host.export.reference import Reference
from polyniod_firmware import mlp

MLP_MD = Path(__file__).resolve().parent.parent / "firmware" / "MLP.md"
META = {"task": "t", "inputs": ["a", "b"], "outputs": ["y"]}


def layers(**change):
    """Two small layers, relu then tanh, consistent; change: {"0.qmin": -128, ...} sets a field of a layer."""
    ls = [mlp.Layer(2, 3, "relu", -5, -100, -100, 127, -100, 0.5, 0.25, [1, -2, 3], [16384, 20000, 30000], [5, 6, 7],
                    bytes([1, 2, 3, 4, 5, 250])),
          mlp.Layer(3, 1, "tanh", -100, 3, -128, 127, 0, 0.25, 1 / 128, [7], [20000], [3], bytes([9, 8, 7]),
                    bytes((i * 7) & 0xFF for i in range(256)))]
    for key, value in change.items():
        k, field = key.split(".")
        setattr(ls[int(k)], field, value)
    return ls


def blob(ls=None, meta=META, in_mean=(0.0, 1.0), in_std=(1.0, 2.0), out_mean=(3.0,), out_std=(4.0,)):
    return Q.pack(ls or layers(), meta, in_mean, in_std, out_mean, out_std)


def reseal(b, model_id=True):
    """Recompute model_id (unless told not to) and the CRC after changing bytes on purpose."""
    b = bytearray(b)
    struct.pack_into("<I", b, 8, len(b))
    if model_id:
        struct.pack_into("<I", b, 12, zlib.crc32(b[mlp.HEADER_SIZE:-4]))
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(b[:-4]))
    return bytes(b)


def body_cut(b, end):
    """The blob's bytes up to `end` (header included), as a whole blob again: the rest is missing."""
    return reseal(b[:end] + bytes(4))


L0 = mlp.HEADER_SIZE  # layer 0's head
L0_ARRAYS = L0 + mlp.LAYER_SIZE
L0_WEIGHTS = L0_ARRAYS + 3 * 7
L1 = L0_WEIGHTS + 6
IO = L1 + mlp.LAYER_SIZE + 7 + 3 + 256


def patched(offset, fmt, value, seal=True):
    b = bytearray(blob())
    struct.pack_into(fmt, b, offset, value)
    return reseal(b) if seal else bytes(b)


def meta_blob(meta_bytes, tail=b""):
    """A blob whose meta is these bytes (and whatever follows the arrays)."""
    b = blob()
    n = struct.unpack_from("<H", b, IO)[0]
    return reseal(b[:IO] + struct.pack("<H", len(meta_bytes)) + meta_bytes + b[IO + 2 + n:-4] + tail + bytes(4))


BROKEN = {  # MLP.md check number -> a blob that fails it (and passes every check before it)
    1: lambda: blob()[:19],
    2: lambda: b"PMLQ" + blob()[4:],
    3: lambda: patched(4, "<H", 2, seal=False),
    4: lambda: patched(8, "<I", mlp.MAX_BLOB + 1, seal=False),
    5: lambda: blob()[:-1],
    6: lambda: blob() + b"\0",
    8: lambda: patched(L0_WEIGHTS, "<b", 99, seal=False),
    9: lambda: reseal(patched(12, "<I", 1234, seal=False), model_id=False),
    10: lambda: patched(7, "<B", 1),
    11: lambda: patched(6, "<B", 0),
    12: lambda: patched(6, "<B", 9),
    13: lambda: body_cut(blob(), L0 + 10),
    14: lambda: patched(L0 + 2, "<H", 0),
    15: lambda: blob(layers(**{"0.n_in": 257})),
    16: lambda: patched(L0 + 4, "<B", 4),
    17: lambda: blob(layers(**{"0.qmin": 10, "0.qmax": 9})),
    18: lambda: blob(layers(**{"0.out_zp": -99})),
    19: lambda: blob(layers(**{"1.out_scale": math.inf})),
    20: lambda: blob(layers(**{"1.n_in": 2})),
    21: lambda: blob(layers(**{"1.in_zp": -99})),
    22: lambda: body_cut(blob(), L0_ARRAYS + 12),
    23: lambda: blob(layers(**{"0.shift": [5, 0, 7]})),
    24: lambda: body_cut(blob(), L0_WEIGHTS + 3),
    25: lambda: blob([mlp.Layer(256, 97, "linear", 0, 0, -128, 127, 0, 1.0, 1.0, [0] * 97, [1] * 97, [1] * 97,
                                bytes(256 * 97))], {"task": "t", "inputs": ["i"] * 256, "outputs": ["o"] * 97},
                     [0.0] * 256, [1.0] * 256, [0.0] * 97, [1.0] * 97),
    26: lambda: body_cut(blob(), IO + 1),
    27: lambda: meta_blob(json.dumps(dict(META, pad="x" * 2100)).encode()),
    28: lambda: meta_blob(b'{"task": "\xff"}'),
    29: lambda: meta_blob(json.dumps(dict(META, outputs=["y", "z"])).encode()),
    30: lambda: body_cut(blob(), len(blob()) - 4 - 4),
    31: lambda: blob(in_mean=(0.0, math.nan)),
    32: lambda: blob(out_std=(0.0,)),
    33: lambda: meta_blob(json.dumps(META).encode(), tail=b"\0"),
}


WHY = {1: "less than a header", 2: "magic", 3: "format version 2", 4: "over the 32768-byte limit", 5: "truncated: ",
       6: "bytes after", 8: "CRC mismatch", 9: "model id", 10: "reserved", 11: "0 layers", 12: "9 layers",
       13: "ends inside layer 0$", 14: "0 outputs", 15: "max width", 16: "activation code 4", 17: "clamp range",
       18: "output zero point", 19: "scale is not", 20: "takes 2 inputs", 21: "input quantisation",
       22: "inside layer 0 multipliers", 23: "shift 0", 24: "inside layer 0 weights", 25: "weights",
       26: "meaning length", 27: "max 2048", 28: "not UTF-8 JSON", 29: "needs 1 outputs", 30: "output stds",
       31: "mean is not finite", 32: "std is not", 33: "unexplained"}  # which check fired, by its message


def documented_checks():
    """{number: kind} from MLP.md's table of checks."""
    text = MLP_MD.read_text()
    rows = re.findall(r"^\| (\d+) \| .* \| (E_[A-Z_]+) \|$", text, flags=re.M)
    return {int(n): kind for n, kind in rows}


def test_the_document_lists_every_check_this_test_breaks():
    assert sorted(documented_checks()) == sorted(BROKEN)


@pytest.mark.parametrize("number", sorted(BROKEN))
def test_each_documented_check_refuses_with_its_kind(number):
    b = BROKEN[number]()
    with pytest.raises(mlp.BlobError) as e:
        mlp.parse(b)
    assert e.value.kind == documented_checks()[number], (number, str(e.value))
    assert re.search(WHY[number], str(e.value)), (number, str(e.value))


def test_the_checks_run_in_the_documented_order():
    """Two checks broken at once: the earlier one in the table is reported."""
    def kind(b):
        with pytest.raises(mlp.BlobError) as e:
            mlp.parse(b)
        return e.value.kind

    assert kind(patched(4, "<H", 2, seal=False)[:30]) == "E_VERSION"  # 3 before 5
    assert kind(patched(8, "<I", mlp.MAX_BLOB + 1, seal=False)[:30]) == "E_TOO_BIG"  # 4 before 5
    assert kind(blob(layers(**{"0.n_in": 300, "0.qmin": 10, "0.qmax": 9}))) == "E_TOO_BIG"  # 15 before 17
    assert kind(blob(layers(**{"0.qmin": 10, "0.qmax": 9, "0.out_zp": 5}))) == "E_CHECK"  # 17 before 18
    assert kind(blob(meta=dict(META, pad="x" * 2100), in_std=(0.0, 1.0))) == "E_TOO_BIG"  # 27 before 32
    # a LUT layer may have out_zp != zp (18 is for linear and relu only)
    mlp.parse(blob(layers(**{"0.act": "tanh", "0.lut": bytes(256), "0.out_zp": 1, "1.in_zp": 1})))


def test_what_is_not_checked_is_accepted_and_runs_as_written():
    """relu with qmin below its zero point: accepted, and the device's arithmetic (the reference, bit
    for bit the same) clamps at qmin, not at the zero point."""
    ls = layers(**{"0.qmin": -128})
    spec = mlp.parse(blob(ls))
    assert spec.layers[0].act == "relu" and spec.layers[0].qmin == -128 != spec.layers[0].zp
    ref = Reference(blob(ls))
    one = Reference(blob([mlp.Layer(2, 1, "relu", 0, 0, -128, 127, 0, 1.0, 1.0, [-3000], [16384], [1], bytes(2))],
                         dict(META, outputs=["y"])))
    assert one.infer_q(np.zeros((1, 2), dtype=np.int8)).tolist() == [[-128]]  # not clamped at zp = 0
    assert ref.infer_q(np.zeros((1, 2), dtype=np.int8)).shape == (1, 1)
    for change in ({"0.qmin": -120, "0.qmax": 100}, {"0.zp": 120, "0.out_zp": 120, "1.in_zp": 120},
                   {"0.mult": [0, 0, 0]}, {"1.lut": bytes(256)}, {"1.out_scale": 0.5, "1.out_zp": 7}):
        mlp.parse(blob(layers(**change)))


def test_packing_has_no_padding_and_the_arrays_are_whole():
    """Field offsets as MLP.md computes them; in_mean (all inputs) comes before in_std."""
    b = blob(in_mean=(1.5, 2.5), in_std=(3.5, 4.5), out_mean=(5.5,), out_std=(6.5,))
    assert struct.calcsize(mlp.HEADER) == 16 and struct.calcsize(mlp.LAYER) == 18
    assert struct.unpack_from("<HHBbbbbbff", b, L0) == (2, 3, 1, -5, -100, -100, 127, -100, 0.5, 0.25)
    assert struct.unpack_from("<3i3H3B", b, L0_ARRAYS) == (1, -2, 3, 16384, 20000, 30000, 5, 6, 7)
    n = struct.unpack_from("<H", b, IO)[0]
    assert struct.unpack_from("<6f", b, IO + 2 + n) == (1.5, 2.5, 3.5, 4.5, 5.5, 6.5)
    assert IO + 2 + n + 24 + 4 == len(b)


def test_meta_bytes_are_compact_json_with_the_documented_key_order():
    """The model_id hashes meta's bytes: the exporter's are json.dumps(separators=(",", ":")), ASCII,
    extra keys first, then task, inputs, outputs; any other spelling parses, with another id."""
    rng = np.random.default_rng(0)
    w = [{"w": rng.uniform(-1, 1, (3, 2)), "b": rng.uniform(-1, 1, 3), "act": "relu"},
         {"w": rng.uniform(-1, 1, (1, 3)), "b": rng.uniform(-1, 1, 1), "act": "linear"}]
    b = Q.export(w, rng.normal(size=(50, 2)), [0, 0], [1, 1], [0], [1], ["a", "b"], ["y"], "tâsk",
                 meta={"outputs": "overwritten", "name": "n", "k": 1.5})
    spec = mlp.parse(b)
    text = json.dumps({"outputs": ["y"], "name": "n", "k": 1.5, "task": "tâsk", "inputs": ["a", "b"]},
                      separators=(",", ":")).encode()
    assert text == b'{"outputs":["y"],"name":"n","k":1.5,"task":"t\\u00e2sk","inputs":["a","b"]}'
    at = b.index(text)
    assert struct.unpack_from("<H", b, at - 2)[0] == len(text)
    assert spec.meta == json.loads(text)
    spaced = json.dumps(json.loads(text), indent=1).encode()
    respelled = b[:at - 2] + struct.pack("<H", len(spaced)) + spaced + b[at + len(text):]
    other = mlp.parse(reseal(respelled))
    assert other.meta == spec.meta and other.model_id != spec.model_id
