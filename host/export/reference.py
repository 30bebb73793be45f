"""The device's integer MLP arithmetic in numpy, vectorised over rows (firmware/MLP.md).

It parses with the device's parser (`mlp.parse`) and requantises with the device's own formula
(`mlp.requantize`, the REQUANTIZE text evaluated on int64 arrays). Only the dot product is
written here: an int64 matmul, exact like the device's integer loop.
"""
import numpy as np

from polyniod_firmware import mlp


def int8_values(data):
    """int8 bytes (bytes, bytearray, memoryview) as an int64 array."""
    return np.frombuffer(bytes(data), dtype=np.int8).astype(np.int64)


class Reference:
    """Runs a blob on the host: `infer_q` bit for bit as the device, `infer` with float64 edges."""

    def __init__(self, blob):
        self.spec = mlp.parse(blob)
        self.model_id, self.task = self.spec.model_id, self.spec.task
        self.inputs, self.outputs, self.n_in, self.n_out = self.spec.inputs, self.spec.outputs, self.spec.n_in, self.spec.n_out
        self._layers = [_IntLayer(layer) for layer in self.spec.layers]
        first, last = self.spec.layers[0], self.spec.layers[-1]
        self._in_gain = 1 / (np.float64(self.spec.in_std) * first.in_scale)
        self._in_offset = first.in_zp - np.float64(self.spec.in_mean) * self._in_gain
        self._out_gain = last.out_scale * np.float64(self.spec.out_std)
        self._out_offset = np.float64(self.spec.out_mean) - last.out_zp * self._out_gain

    def infer_q(self, x_q):
        """int8 inputs [rows, n_in] (any integer dtype, values -128..127) -> int8 outputs [rows, n_out]."""
        x = np.asarray(x_q)
        if x.ndim != 2 or x.shape[1] != self.n_in or x.dtype.kind not in "iu":
            raise ValueError(f"inputs must be integers shaped [rows, {self.n_in}], not {x.dtype} {x.shape}")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError("int8 inputs must lie in -128..127")
        x = x.astype(np.int64)
        for layer in self._layers:
            x = layer(x)
        return x.astype(np.int8)

    def quantize_inputs(self, values):
        """Inputs in their units [rows, n_in] -> int8, as the device's `infer` does (float64 here:
        a value within float32 rounding of a .5 boundary may land one step away on the device)."""
        v = np.asarray(values, dtype=np.float64)
        return np.clip(np.rint(v * self._in_gain + self._in_offset), -128, 127).astype(np.int8)

    def dequantize_outputs(self, q):
        """int8 outputs -> the outputs' units."""
        return np.asarray(q, dtype=np.float64) * self._out_gain + self._out_offset

    def infer(self, values):
        """Inputs in their units [rows, n_in] -> outputs in theirs [rows, n_out]."""
        return self.dequantize_outputs(self.infer_q(self.quantize_inputs(values)))


class _IntLayer:
    def __init__(self, layer):
        self.w = int8_values(layer.weights).reshape(layer.n_out, layer.n_in)
        self.bias = np.array(layer.bias, dtype=np.int64)
        self.mult = np.array(layer.mult, dtype=np.int64)
        self.shift = np.array(layer.shift, dtype=np.int64)
        self.zp, self.qmin, self.qmax = layer.zp, layer.qmin, layer.qmax
        self.lut = None if layer.lut is None else int8_values(layer.lut)

    def __call__(self, x):
        acc = x @ self.w.T + self.bias
        q = mlp.requantize(acc, self.mult, self.shift, self.zp, self.qmin, self.qmax)
        return q if self.lut is None else self.lut[q + 128]
