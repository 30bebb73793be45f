"""Integer MLP: the model blob's one parser and the device executor (spec: MLP.md).

The same module runs on the board and imports under CPython as `polyniod_firmware.mlp`, where
host/export checks what it writes with `parse` and its numpy reference applies `requantize`.
The arithmetic after each dot product is written once, as the text REQUANTIZE, in operators that
MicroPython ints, viper machine words and numpy int64 arrays all evaluate alike; the layer kernel
is one source compiled twice: with `@micropython.viper` where the build has native emitters,
and as plain Python (ptr8/ptr16 = the buffer itself) where it has not.
"""
import array
import binascii
import json
import struct

try:
    import emit
except ImportError:  # CPython: the package polyniod_firmware
    from . import emit

MAGIC = b"PMLP"
VERSION = 1
HEADER = "<4sHBBII"  # magic, version, n_layers, reserved (0), size, model_id
LAYER = "<HHBbbbbbff"  # n_in, n_out, act, in_zp, zp, qmin, qmax, out_zp, in_scale, out_scale
HEADER_SIZE = struct.calcsize(HEADER)
LAYER_SIZE = struct.calcsize(LAYER)
# The one list of activations: a layer's act code in the blob is its index here. Training (the float
# model, `host train --act`), the exporter and the host reference read it; they only add each one's function.
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
LUT_ACTIVATIONS = ("tanh", "sigmoid")  # these carry a 256-byte int8 -> int8 table
LUT_SIZE = 256

MAX_BLOB = 32768  # the firmware's default xfer_max_bytes; a swap holds two models in ~100 KB
MAX_LAYERS = 8
MAX_WIDTH = 256  # inputs or outputs of a layer
MAX_WEIGHTS = 24576  # int8 weights over all layers
MAX_META = 2048  # bytes of the I/O meaning JSON
BIAS_LIMIT = 1 << 28  # |bias| < this; with MAX_WIDTH every accumulator stays below 2**29
MULT_LIMIT = 1 << 15  # multipliers are 0 <= m < 2**15
SHIFT_MIN = 1
SHIFT_MAX = 29

# The one definition of what follows the dot product (MLP.md "Requantisation"): with
# |acc| < 2**29, 0 <= m < 2**15 and 1 <= t <= 29 it is exactly
# q = clamp(floor((acc * m + 2**(14 + t)) / 2**(15 + t)) + zp, qmin, qmax), computed in halves
# so that no intermediate reaches 2**30 (a 31-bit small int on the ESP32, one viper word).
# The clamps are branch-free (d >> 31 is -1 when d < 0) so numpy applies them elementwise.
REQUANTIZE = """
hi = acc >> 15
q = ((hi * m + (((acc & 32767) * m) >> 15) + (1 << (t - 1))) >> t) + zp
d = q - qmax
q = q - (d & ~(d >> 31))
d = q - qmin
q = q - (d & (d >> 31))
"""

# One dense layer, int8 in x -> int8 out y (both stored as bytes). w: the layer's weights,
# row-major [n_out][n_in], followed by its LUT when it has one. p: array('H') of 16-bit
# patterns: n_in, n_out, zp, qmin, qmax, LUT offset in w (0: none), then per output channel
# bias high half, bias low half, m, t. Loads through ptr8/ptr16 are unsigned: sign-extended here.
KERNEL = """
def layer(x, y, w, p):
    xs = ptr8(x)
    ys = ptr8(y)
    ws = ptr8(w)
    ps = ptr16(p)
    n_in = ps[0]
    n_out = ps[1]
    zp = (ps[2] ^ 0x8000) - 0x8000
    qmin = (ps[3] ^ 0x8000) - 0x8000
    qmax = (ps[4] ^ 0x8000) - 0x8000
    lut = ps[5]
    k = 0
    c = 0
    while c < n_out:
        e = 6 + 4 * c
        acc = (((ps[e] ^ 0x8000) - 0x8000) << 16) + ps[e + 1]
        m = ps[e + 2]
        t = ps[e + 3]
        i = 0
        while i < n_in:
            acc += ((ws[k] ^ 0x80) - 0x80) * ((xs[i] ^ 0x80) - 0x80)
            k += 1
            i += 1
REQUANTIZE
        if lut:
            q = (ws[lut + 128 + q] ^ 0x80) - 0x80
        ys[c] = q & 0xFF
        c += 1
"""


def _indented(text, spaces):
    return "\n".join(" " * spaces + line for line in text.strip().split("\n"))


requantize = emit.build("def requantize(acc, m, t, zp, qmin, qmax):\n" + _indented(REQUANTIZE, 4) + "\n    return q\n",
                      "requantize", {})
_KERNEL_SOURCE = KERNEL.replace("REQUANTIZE", _indented(REQUANTIZE, 8))
plain_layer = emit.build(_KERNEL_SOURCE, "layer", {"ptr8": emit.same, "ptr16": emit.same})


def compile_kernel(decorator="@micropython.viper"):
    """The layer kernel under a code emitter, or None where this build has none."""
    return emit.under(decorator, _KERNEL_SOURCE, "layer")


viper_layer = compile_kernel()


class BlobError(ValueError):
    """A blob this firmware will not run. kind names the protocol error code it maps to:
    E_ARG (not a model blob), E_VERSION (format or activation this firmware does not know),
    E_TOO_BIG (over the size limits), E_CHECK (truncated, corrupted or inconsistent)."""

    def __init__(self, kind, why):
        super().__init__(why)
        self.kind = kind


class Layer:
    """One dense layer in integers (MLP.md). bias, mult, shift: one int per output channel;
    weights: n_out * n_in int8 bytes, row-major; lut: 256 int8 bytes (tanh, sigmoid) or None."""

    def __init__(self, n_in, n_out, act, in_zp, zp, qmin, qmax, out_zp, in_scale, out_scale,
                 bias, mult, shift, weights, lut=None):
        self.n_in, self.n_out, self.act = n_in, n_out, act
        self.in_zp, self.zp, self.qmin, self.qmax, self.out_zp = in_zp, zp, qmin, qmax, out_zp
        self.in_scale, self.out_scale = in_scale, out_scale
        self.bias, self.mult, self.shift, self.weights, self.lut = bias, mult, shift, weights, lut


class Spec:
    """A parsed blob: layers, what the inputs and outputs mean, their normalisation, the id."""

    def __init__(self, layers, meta, in_mean, in_std, out_mean, out_std, model_id, size):
        self.layers, self.meta, self.model_id, self.size = layers, meta, model_id, size
        self.in_mean, self.in_std, self.out_mean, self.out_std = in_mean, in_std, out_mean, out_std
        self.task, self.inputs, self.outputs = meta["task"], meta["inputs"], meta["outputs"]
        self.n_in, self.n_out = layers[0].n_in, layers[-1].n_out


class _Reader:
    """Bounds-checked reads from the blob's body (a truncated field is a BlobError, not a crash)."""

    def __init__(self, view, start, end):
        self.view, self.at, self.end = view, start, end

    def take(self, n, what):
        if self.at + n > self.end:
            raise BlobError("E_CHECK", "blob ends inside %s" % what)
        self.at += n
        return self.view[self.at - n:self.at]

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _finite(v):
    return v - v == 0  # False for inf and nan


def _check(ok, kind, why):
    if not ok:
        raise BlobError(kind, why)


def parse(blob):
    """Check a blob (bytes-like) and return its Spec; BlobError (a ValueError) says why not.

    The layers' weights and LUTs are memoryviews into blob: keep blob alive with the Spec."""
    n = len(blob)
    _check(n >= HEADER_SIZE + 4, "E_CHECK", "truncated: %d bytes, less than a header" % n)
    magic, version, n_layers, reserved, size, model_id = struct.unpack_from(HEADER, blob, 0)
    _check(magic == MAGIC, "E_ARG", "not a model blob (magic %r, expected %r)" % (bytes(magic), MAGIC))
    _check(version == VERSION, "E_VERSION",
           "blob format version %d; this firmware reads version %d (re-export the model or update the firmware)"
           % (version, VERSION))
    _check(size <= MAX_BLOB, "E_TOO_BIG", "blob of %d bytes is over the %d-byte limit" % (size, MAX_BLOB))
    _check(n >= size, "E_CHECK", "truncated: %d of %d bytes" % (n, size))
    _check(n == size, "E_CHECK", "%d bytes after the blob's announced %d" % (n - size, size))
    _check(size >= HEADER_SIZE + 4, "E_CHECK", "announced size %d is less than a header" % size)
    view = memoryview(blob)
    crc = struct.unpack_from("<I", blob, size - 4)[0]
    _check(binascii.crc32(view[:size - 4]) & 0xFFFFFFFF == crc, "E_CHECK", "CRC mismatch: blob corrupted")
    _check(binascii.crc32(view[HEADER_SIZE:size - 4]) & 0xFFFFFFFF == model_id, "E_CHECK",
           "model id is not the CRC of the content")
    _check(reserved == 0, "E_CHECK", "reserved header byte is %d, not 0" % reserved)
    _check(1 <= n_layers <= MAX_LAYERS, "E_TOO_BIG" if n_layers else "E_CHECK",
           "%d layers (1..%d allowed)" % (n_layers, MAX_LAYERS))
    r = _Reader(view, HEADER_SIZE, size - 4)
    layers = []
    weights = 0
    for k in range(n_layers):
        layers.append(_parse_layer(r, k, layers[-1] if layers else None))
        weights += layers[-1].n_in * layers[-1].n_out
        _check(weights <= MAX_WEIGHTS, "E_TOO_BIG", "more than %d weights" % MAX_WEIGHTS)
    n_in, n_out = layers[0].n_in, layers[-1].n_out
    meta_len = r.unpack("<H", "the I/O meaning length")[0]
    _check(meta_len <= MAX_META, "E_TOO_BIG", "I/O meaning of %d bytes (max %d)" % (meta_len, MAX_META))
    try:
        meta = json.loads(str(r.take(meta_len, "the I/O meaning"), "utf-8"))
    except (ValueError, RuntimeError):  # UnicodeError is a ValueError; CPython: RecursionError
        raise BlobError("E_CHECK", "I/O meaning is not UTF-8 JSON")
    _check_meta(meta, n_in, n_out)
    in_mean = r.unpack("<%df" % n_in, "the input means")
    in_std = r.unpack("<%df" % n_in, "the input stds")
    out_mean = r.unpack("<%df" % n_out, "the output means")
    out_std = r.unpack("<%df" % n_out, "the output stds")
    for v in in_mean + out_mean:
        _check(_finite(v), "E_CHECK", "a mean is not finite")
    for v in in_std + out_std:
        _check(_finite(v) and v > 0, "E_CHECK", "a std is not a positive finite number")
    _check(r.at == r.end, "E_CHECK", "%d unexplained bytes before the CRC" % (r.end - r.at))
    return Spec(layers, meta, in_mean, in_std, out_mean, out_std, model_id, size)


def _parse_layer(r, k, prev):
    what = "layer %d" % k
    n_in, n_out, act, in_zp, zp, qmin, qmax, out_zp, in_scale, out_scale = r.unpack(LAYER, what)
    _check(n_in and n_out, "E_CHECK", "%s has %d inputs and %d outputs" % (what, n_in, n_out))
    _check(n_in <= MAX_WIDTH and n_out <= MAX_WIDTH, "E_TOO_BIG",
           "%s is %dx%d (max width %d)" % (what, n_in, n_out, MAX_WIDTH))
    _check(act < len(ACTIVATIONS), "E_VERSION", "%s: unknown activation code %d" % (what, act))
    act = ACTIVATIONS[act]
    lut = act in LUT_ACTIVATIONS
    _check(qmin <= qmax, "E_CHECK", "%s: clamp range %d..%d is empty" % (what, qmin, qmax))
    _check(lut or out_zp == zp, "E_CHECK", "%s: output zero point %d differs from %d" % (what, out_zp, zp))
    for s in (in_scale, out_scale):
        _check(_finite(s) and s > 0, "E_CHECK", "%s: a scale is not a positive finite number" % what)
    if prev:
        _check(n_in == prev.n_out, "E_CHECK", "%s takes %d inputs, layer %d gives %d" % (what, n_in, k - 1, prev.n_out))
        _check(in_zp == prev.out_zp and in_scale == prev.out_scale, "E_CHECK",
               "%s's input quantisation differs from layer %d's output" % (what, k - 1))
    bias = r.unpack("<%di" % n_out, what + " biases")
    mult = r.unpack("<%dH" % n_out, what + " multipliers")
    shift = r.unpack("<%dB" % n_out, what + " shifts")
    _within(bias, 1 - BIAS_LIMIT, BIAS_LIMIT - 1, what, "bias")
    _within(mult, 0, MULT_LIMIT - 1, what, "multiplier")
    _within(shift, SHIFT_MIN, SHIFT_MAX, what, "shift")
    n_w = n_in * n_out
    packed = r.take(n_w + (LUT_SIZE if lut else 0), what + (" weights and lookup table" if lut else " weights"))
    layer = Layer(n_in, n_out, act, in_zp, zp, qmin, qmax, out_zp, in_scale, out_scale,
                  bias, mult, shift, packed[:n_w], packed[n_w:] if lut else None)
    layer.packed = packed  # weights then LUT, as the kernel reads them
    return layer


def _within(values, lo, hi, what, name):
    """Every value in lo..hi, else BlobError E_CHECK naming the first that is not. min and max
    are C loops: a deploy parses a blob's channels twice (models.Store.build), ~30 ms of Python saved
    on an ESP32 for a 128-wide model."""
    if values and (min(values) < lo or max(values) > hi):
        for v in values:
            _check(lo <= v <= hi, "E_CHECK", "%s: %s %d out of range" % (what, name, v))


def _check_meta(meta, n_in, n_out):
    _check(isinstance(meta, dict), "E_CHECK", "I/O meaning is not a JSON object")
    _check(isinstance(meta.get("task"), str), "E_CHECK", "I/O meaning has no task name")
    for key, n in (("inputs", n_in), ("outputs", n_out)):
        names = meta.get(key)
        _check(isinstance(names, list) and len(names) == n and all(isinstance(s, str) for s in names),
               "E_CHECK", "I/O meaning needs %d %s names" % (n, key))


def _u16(v):
    return v & 0xFFFF


def _params(layer, lut_at):
    """The kernel's p for one layer: its fields as 16-bit patterns (see KERNEL)."""
    n = layer.n_out
    p = array.array("H", bytes(2 * (6 + 4 * n)))  # filled in place: no per-channel temporaries
    p[0], p[1], p[2], p[3], p[4], p[5] = layer.n_in, n, _u16(layer.zp), _u16(layer.qmin), _u16(layer.qmax), lut_at
    bias, mult, shift = layer.bias, layer.mult, layer.shift
    for c in range(n):
        b = bias[c]
        k = 6 + 4 * c
        p[k] = _u16(b >> 16)
        p[k + 1] = b & 0xFFFF
        p[k + 2] = mult[c]
        p[k + 3] = shift[c]
    return p


class Model:
    """A blob ready to run inside the control loop: buffers are allocated here, none per inference.

    viper=False forces the plain-Python kernel (the automatic fallback where viper is missing)."""

    def __init__(self, blob, viper=True):
        spec = parse(blob)  # not kept: its per-channel tuples would double the RAM of _params
        self.model_id, self.meta, self.task = spec.model_id, spec.meta, spec.task
        self.inputs, self.outputs, self.n_in, self.n_out = spec.inputs, spec.outputs, spec.n_in, spec.n_out
        self.emitter = "viper" if viper and viper_layer else "plain"
        self._kernel = viper_layer if self.emitter == "viper" else plain_layer
        width = max(layer.n_out for layer in spec.layers)
        buffers = (bytearray(width), bytearray(width))
        last = len(spec.layers) - 1
        # (w, p, output buffer); None: the caller's y
        self._steps = [(layer.packed, _params(layer, layer.n_in * layer.n_out if layer.lut else 0),
                        None if k == last else buffers[k % 2]) for k, layer in enumerate(spec.layers)]
        first, final = spec.layers[0], spec.layers[-1]  # lists: reading an array('f') would box a float
        self._in_gain = [1 / (s * first.in_scale) for s in spec.in_std]
        self._in_offset = [first.in_zp - m * g for m, g in zip(spec.in_mean, self._in_gain)]
        self._out_gain = [final.out_scale * s for s in spec.out_std]
        self._out_offset = [m - final.out_zp * g for m, g in zip(spec.out_mean, self._out_gain)]
        self._x = bytearray(self.n_in)
        self._y = bytearray(self.n_out)

    def infer_q(self, x, y):
        """int8 inputs x (n_in bytes, two's complement: a bytearray) -> int8 outputs written into y."""
        if len(x) < self.n_in or len(y) < self.n_out:  # viper does not check bounds
            raise ValueError("infer_q needs %d input and %d output bytes" % (self.n_in, self.n_out))
        kernel = self._kernel
        for w, p, out in self._steps:
            if out is None:
                out = y
            kernel(x, out, w, p)
            x = out

    def infer(self, values, out):
        """Inputs in their own units -> outputs in theirs, written into out (a list or array('f')).

        Float only here, at the edges: MicroPython boxes the two floats computed per input and
        per output (heap allocations; `infer_q` makes none). Returns how many inputs lay outside
        the quantised range and were clipped to it."""
        x, y = self._x, self._y
        clipped = 0
        for i in range(self.n_in):
            q = round(values[i] * self._in_gain[i] + self._in_offset[i])
            if q < -128 or q > 127:
                q = -128 if q < 0 else 127
                clipped += 1
            x[i] = q & 0xFF
        self.infer_q(x, y)
        for j in range(self.n_out):
            out[j] = ((y[j] ^ 0x80) - 0x80) * self._out_gain[j] + self._out_offset[j]
        return clipped
