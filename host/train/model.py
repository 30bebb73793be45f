"""The float MLP that is trained, and its quantisation-aware mode.

Hidden layers with an activation each, a linear output, all on normalised inputs and targets: the
shape the exporter turns into the device's int8 layers (host/export/quantize.py). With `qat` on,
the forward pass rounds what the device will round -- weights to int8 per output channel, every
layer's input and output to int8 over the ranges seen so far, tanh/sigmoid at their lookup table's
fixed output step -- and gradients pass the rounding unchanged (straight-through estimator), so
training learns weights that survive quantisation.
"""

import torch
from torch import nn

from host.export.quantize import LUT_INPUT_LIMIT, LUT_OUTPUT, per_activation
from polyniod_firmware import mlp

ACTIVATIONS = per_activation({"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda x: x})


class MLP(nn.Module):
    def __init__(self, n_in, hidden, n_out, act="relu", first_act=None, init=None):
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.acts = [first_act or act] + [act] * (len(hidden) - 1) + ["linear"] if hidden else ["linear"]
        if init is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init, init)
        self.qat = False
        # observed [lo, hi] of the input and of each layer's output (pre-activation for tanh/sigmoid)
        self.register_buffer("ranges", torch.zeros(len(sizes), 2))

    def forward(self, x):
        if self.qat:
            x = self._fake_quant(x, 0)
        for i, (linear, act) in enumerate(zip(self.linears, self.acts), start=1):
            w = _fake_quant_weight(linear.weight) if self.qat else linear.weight
            x = nn.functional.linear(x, w, linear.bias)
            if self.qat and act in mlp.LUT_ACTIVATIONS:
                limit = LUT_INPUT_LIMIT[act]
                x = ACTIVATIONS[act](self._fake_quant(x.clamp(-limit, limit), i))
                scale, zp = LUT_OUTPUT[act]
                x = _fake_quant(x, scale, zp)
            else:
                x = ACTIVATIONS[act](x)
                if self.qat:
                    x = self._fake_quant(x, i)
        return x

    def _fake_quant(self, x, i):
        """x rounded to int8 over the range observed so far (widened while training)."""
        if self.training:
            with torch.no_grad():
                lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
                seen = self.ranges[i]
                if seen[0] == seen[1]:  # first batch
                    seen[0], seen[1] = lo, hi
                else:
                    seen[0], seen[1] = torch.minimum(seen[0], lo), torch.maximum(seen[1], hi)
        lo, hi = self.ranges[i]
        scale = torch.clamp((hi - lo) / 254, min=1e-9)
        zp = torch.clamp(torch.round(-127.5 - lo / scale), -128, 127)
        return _fake_quant(x, scale, zp)

    def layers(self):
        """The exporter's float layers: [{"w": [n_out, n_in], "b": [n_out], "act"}] as numpy float64."""
        return [{"w": lin.weight.detach().cpu().double().numpy(), "b": lin.bias.detach().cpu().double().numpy(),
                 "act": act} for lin, act in zip(self.linears, self.acts)]


def _fake_quant(x, scale, zp):
    q = torch.clamp(torch.round(x / scale) + zp, -128, 127)
    return x + ((q - zp) * scale - x).detach()


def _fake_quant_weight(w):
    """Symmetric int8 per output channel (row), as the exporter quantises weights."""
    scale = torch.clamp(w.detach().abs().amax(dim=1, keepdim=True) / 127, min=1e-12)
    return w + (torch.clamp(torch.round(w / scale), -127, 127) * scale - w).detach()
