"""Float layers -> the integer layers and the blob the device runs (firmware/MLP.md).

A float MLP is `[{"w": [n_out, n_in], "b": [n_out], "act": one of mlp.ACTIVATIONS}, ...]` over
normalised inputs and targets. `quantize` picks every scale from calibration inputs
(TensorFlow Lite Micro's scheme, with the 15-bit multiplier the device can apply in 32 bits),
`pack` writes the format, `export` does both and checks the result with the device's parser,
`int8_error` measures what quantisation costs on given inputs.
"""
import json
import math
import struct
import zlib

import numpy as np

from polyniod_firmware import mlp

from .reference import Reference



def per_activation(values, names=mlp.ACTIVATIONS):
    """values ({activation: its function or constant}) in the order of names, the integer MLP's one list
    (mlp.ACTIVATIONS; mlp.LUT_ACTIVATIONS for the LUT ones): an activation added there and not
    implemented here, or one here the device does not know, fails at import, not in a model."""
    if sorted(values) != sorted(names):
        raise ValueError(f"activations {', '.join(values)} are not the integer MLP's {', '.join(names)}")
    return {name: values[name] for name in names}


ACTIVATIONS = per_activation({
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
})
# TFLM's fixed output quantisation of the LUT activations, and where their int8 output stops changing
LUT_OUTPUT = per_activation({"tanh": (1 / 128, 0), "sigmoid": (1 / 256, -128)}, mlp.LUT_ACTIVATIONS)
LUT_INPUT_LIMIT = per_activation({"tanh": 4.0, "sigmoid": 8.0}, mlp.LUT_ACTIVATIONS)
REAL_SCALE_LIMIT = 0.49  # multipliers need real scale < 0.5 (shift >= 1); the output range widens if not
RAW_BIAS_LIMIT = 1 << 27  # |bias| before folding the input zero point (folding adds < 2**22)


def float_forward(layers, x):
    """The float network on normalised inputs [rows, n_in]; returns each layer's pre-activations and the output."""
    pre = []
    for layer in layers:
        pre.append(x @ np.asarray(layer["w"], dtype=np.float64).T + np.asarray(layer["b"], dtype=np.float64))
        x = ACTIVATIONS[layer["act"]](pre[-1])
    return pre, x


def affine(lo, hi, min_scale=0.0):
    """(scale, zero point) mapping [lo, hi], widened to hold 0.0 exactly, into int8 -128..127.

    254 steps, not 255: whichever way the zero point rounds, lo and hi still land inside, so the
    calibration data itself is never clipped. The scale is rounded to float32 first: the blob
    stores float32 and the integers derive from it."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = float(np.float32(max((hi - lo) / 254, min_scale, 1e-9)))
    zp = int(np.clip(round(-127.5 - lo / scale), -128, 127))
    return scale, zp


def multiplier(real):
    """(m, shift) with m / 2**(15 + shift) closest to real; 0 <= m < 2**15, 1 <= shift <= 29."""
    if not 0 <= real < 0.5:
        raise ValueError(f"real scale {real} must lie in [0, 0.5)")
    if real == 0:
        return 0, mlp.SHIFT_MAX
    frac, exp = math.frexp(real)  # real = frac * 2**exp, 0.5 <= frac < 1, exp <= -1
    m = round(frac * (1 << 15))
    if m == 1 << 15:
        m, exp = 1 << 14, exp + 1
    shift = -exp
    if shift > mlp.SHIFT_MAX:  # too small for 15 bits: fewer bits at the largest shift
        return round(real * 2.0 ** (15 + mlp.SHIFT_MAX)), mlp.SHIFT_MAX
    return m, shift


def lookup_table(act, scale, zp, out_scale, out_zp):
    """The 256 int8 outputs of act for the int8 inputs -128..127 with the given quantisations."""
    x = (np.arange(-128, 128) - zp) * scale
    return np.clip(np.rint(ACTIVATIONS[act](x) / out_scale) + out_zp, -128, 127).astype(np.int8)


def quantize(layers, calibration):
    """Float layers + normalised calibration inputs [rows, n_in] -> [mlp.Layer] (weights as bytes)."""
    _check_float_layers(layers)
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != np.shape(layers[0]["w"])[1] or not np.isfinite(x).all():
        raise ValueError(f"calibration must be finite rows of {np.shape(layers[0]['w'])[1]} normalised inputs, "
                         f"not an array shaped {x.shape}")
    pre, _ = float_forward(layers, x)
    in_scale, in_zp = affine(x.min(), x.max())
    out = []
    for layer, p in zip(layers, pre):
        out.append(_quantize_layer(layer, p, in_scale, in_zp))
        in_scale, in_zp = out[-1].out_scale, out[-1].out_zp
    return out


def _quantize_layer(layer, pre, in_scale, in_zp):
    w = np.asarray(layer["w"], dtype=np.float64)
    b = np.asarray(layer["b"], dtype=np.float64)
    act = layer["act"]
    # per output channel, symmetric; coarser where a huge bias would not fit the accumulator
    w_scale = np.maximum(np.abs(w).max(axis=1) / 127, np.abs(b) / (in_scale * RAW_BIAS_LIMIT))
    w_scale[w_scale == 0] = 1.0  # a channel of zeros: any scale
    wq = np.clip(np.rint(w / w_scale[:, None]), -127, 127).astype(np.int64)
    if act in mlp.LUT_ACTIVATIONS:
        limit = LUT_INPUT_LIMIT[act]
        lo, hi = np.clip(pre.min(), -limit, limit), np.clip(pre.max(), -limit, limit)
    else:
        post = ACTIVATIONS[act](pre)
        lo, hi = post.min(), post.max()
    scale, zp = affine(lo, hi, min_scale=in_scale * w_scale.max() / REAL_SCALE_LIMIT)
    mult, shift = zip(*(multiplier(in_scale * s / scale) for s in w_scale))
    bias = np.rint(b / (in_scale * w_scale)).astype(np.int64) - in_zp * wq.sum(axis=1)  # input zero point folded in
    qmin = zp if act == "relu" else -128
    if act in mlp.LUT_ACTIVATIONS:
        out_scale, out_zp = LUT_OUTPUT[act]
        lut = lookup_table(act, scale, zp, out_scale, out_zp).tobytes()
    else:
        out_scale, out_zp, lut = scale, zp, None
    return mlp.Layer(w.shape[1], w.shape[0], act, in_zp, zp, qmin, 127, out_zp, in_scale, out_scale,
                     [int(v) for v in bias], list(mult), list(shift), wq.astype(np.int8).tobytes(), lut)


def pack(layers, meta, in_mean, in_std, out_mean, out_std):
    """Integer layers + I/O meaning (a dict: task, inputs, outputs, ...) + normalisation -> blob bytes."""
    body = bytearray()
    for L in layers:
        body += struct.pack(mlp.LAYER, L.n_in, L.n_out, mlp.ACTIVATIONS.index(L.act), L.in_zp, L.zp,
                            L.qmin, L.qmax, L.out_zp, L.in_scale, L.out_scale)
        body += struct.pack(f"<{L.n_out}i", *L.bias) + struct.pack(f"<{L.n_out}H", *L.mult)
        body += struct.pack(f"<{L.n_out}B", *L.shift) + bytes(L.weights) + (bytes(L.lut) if L.lut is not None else b"")
    text = json.dumps(meta, separators=(",", ":")).encode()
    body += struct.pack("<H", len(text)) + text
    for values in (in_mean, in_std, out_mean, out_std):
        body += struct.pack(f"<{len(values)}f", *values)
    size = mlp.HEADER_SIZE + len(body) + 4
    blob = struct.pack(mlp.HEADER, mlp.MAGIC, mlp.VERSION, len(layers), 0, size, zlib.crc32(body)) + body
    return blob + struct.pack("<I", zlib.crc32(blob))


def export(layers, calibration, in_mean, in_std, out_mean, out_std, inputs, outputs, task, meta=None):
    """Float layers -> blob bytes, checked by the device's own parser.

    calibration: normalised inputs [rows, n_in] (the training inputs will do) that set the
    activation ranges; in_*/out_*: the normalisation, (v - mean) / std, per input and output;
    inputs/outputs: what each means (telemetry fields or features in, what the output drives);
    task: its name; meta: more JSON-able facts to carry (e.g. {"name": ...})."""
    _check_float_layers(layers)
    n_in, n_out = np.shape(layers[0]["w"])[1], np.shape(layers[-1]["w"])[0]
    for name, values, n in (("in_mean", in_mean, n_in), ("in_std", in_std, n_in),
                            ("out_mean", out_mean, n_out), ("out_std", out_std, n_out)):
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (n,) or not np.isfinite(v).all() or (name.endswith("std") and (v <= 0).any()):
            raise ValueError(f"{name} must be {n} finite numbers" + (", all > 0" if name.endswith("std") else ""))
    if len(inputs) != n_in or len(outputs) != n_out:
        raise ValueError(f"the model takes {n_in} inputs and gives {n_out} outputs: "
                         f"got {len(inputs)} input and {len(outputs)} output names")
    io = dict(meta or {}, task=str(task), inputs=[str(s) for s in inputs], outputs=[str(s) for s in outputs])
    if len(json.dumps(io, separators=(",", ":")).encode()) > mlp.MAX_META:
        raise ValueError(f"names and meta take more than {mlp.MAX_META} bytes of JSON: shorten them")
    blob = pack(quantize(layers, calibration), io, *(np.asarray(v, dtype=np.float64).tolist()
                                                     for v in (in_mean, in_std, out_mean, out_std)))
    mlp.parse(blob)
    return blob


def int8_error(layers, blob, values):
    """Float network vs the blob's integers (reference executor) on inputs in their units [rows, n_in].

    Per output, in the outputs' units: max_abs and rms of the difference, rel_rms = rms / std of
    the float outputs. Both sides use the blob's stored (float32) normalisation."""
    ref = Reference(blob)
    spec = ref.spec
    v = np.asarray(values, dtype=np.float64)
    _, y = float_forward(layers, (v - np.float64(spec.in_mean)) / np.float64(spec.in_std))
    y_float = y * np.float64(spec.out_std) + np.float64(spec.out_mean)
    err = ref.infer(v) - y_float
    rms = np.sqrt(np.mean(err ** 2, axis=0))
    spread = np.maximum(y_float.std(axis=0), 1e-300)
    return {"n": len(v), "max_abs": np.abs(err).max(axis=0).tolist(), "rms": rms.tolist(),
            "rel_rms": (rms / spread).tolist()}


def _check_float_layers(layers):
    if not 1 <= len(layers) <= mlp.MAX_LAYERS:
        raise ValueError(f"{len(layers)} layers: the device runs 1..{mlp.MAX_LAYERS}")
    n_prev, total = None, 0
    for k, layer in enumerate(layers):
        w, b, act = np.asarray(layer["w"]), np.asarray(layer["b"]), layer["act"]
        if act not in ACTIVATIONS:
            raise ValueError(f"layer {k}: activation {act!r} is not one of {', '.join(ACTIVATIONS)}")
        if w.ndim != 2 or b.shape != (w.shape[0],) or 0 in w.shape:
            raise ValueError(f"layer {k}: w must be [n_out, n_in] and b [n_out], got {w.shape} and {b.shape}")
        if n_prev is not None and w.shape[1] != n_prev:
            raise ValueError(f"layer {k} takes {w.shape[1]} inputs but layer {k - 1} gives {n_prev}")
        if max(w.shape) > mlp.MAX_WIDTH:
            raise ValueError(f"layer {k} is {w.shape[0]}x{w.shape[1]}: the device's widest layer is {mlp.MAX_WIDTH}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {k} has NaN or infinite weights")
        n_prev, total = w.shape[0], total + w.size
    if total > mlp.MAX_WEIGHTS:
        raise ValueError(f"{total} weights: the device holds at most {mlp.MAX_WEIGHTS}")
