"""Tasks: what a model learns, defined once here. Adding a task is adding one function to TASKS.

A task function returns a Task. One that learns from sessions takes `joints` (the robot's joint
names) and `rate_hz` (the sessions' loop rate) first, then its options; one that brings its own
data (sin, xor) takes only options and sets Task.data.

Inputs are feature names (polyniod_firmware.features: `<signal>` or `<signal>@<k>`, the value k
ticks from now), so the device's track mode computes exactly the inputs the model was trained on.
Outputs are telemetry fields, `<field>@+k` when the output lies k ticks ahead (dataset.py reads
both from sessions).
"""

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from polyniod_firmware import features

from host.errors import UserError

VELOCITY_TICKS = 3  # the inverse model's velocity: the angle now against 3 ticks ago (noise /3 of a 1-tick difference)
TUNE = 40  # the inverse model's closed-loop tuning iterations (tune.py): ~8 s; host/EVAL.md "Closed-loop tuning"
LATENCY_S = 0.05  # an SG90 answers a new pulse after ~50 ms (REFERENCE.md: 10 deg take 80 ms)


@dataclass
class Task:
    name: str
    inputs: list
    outputs: list
    hidden: tuple = (32, 32)
    act: str = "relu"
    first_act: Optional[str] = None  # the first hidden layer's activation, when it differs from `act`
    init: Optional[float] = None  # weights and biases uniform(-init, init) instead of PyTorch's default
    data: Optional[Callable] = None  # seed -> (x_train, y_train, x_val, y_val) for tasks without sessions
    defaults: dict = field(default_factory=dict)  # training settings that suit the task (epochs, lr, batch)
    options: dict = field(default_factory=dict)  # what the task was built with, stored with the model


def ahead_ticks(rate_hz, ahead=None):
    """How many ticks ahead the inverse model's target lies: given, or the servo's latency at this rate."""
    k = int(ahead) if ahead is not None else max(1, round(LATENCY_S * rate_hz))
    if not 1 <= k <= features.MAX_FUTURE:
        raise UserError(f"--ahead {k}: a target lies 1..{features.MAX_FUTURE} ticks ahead")
    return k


def inverse(joints, rate_hz, ahead=None):
    """Feed-forward controller: the angle now and VELOCITY_TICKS ago, the pulse sent last tick, the angle wanted K
    ticks ahead -> the pulse.

    Learned from logged data, where the wanted angle is the one actually reached K ticks later. The
    previous pulse, not the previous angle: it carries the servo's state (direction, backlash side)
    without the ADC's noise, which an angle difference one tick apart feeds straight into the pulse. On
    the virtual Gen0 the joint's jitter at rest went from 2.7 deg std to 1.3-1.8 (the linear mapping:
    0.65), and the tracking RMSE over the held-out trajectories from ~3.0 to ~2.3 deg (host/EVAL.md).
    The angle 3 ticks ago gives the joint's velocity over 30 ms, through which a heavy limb's inertia
    shows: with the best of three training seeds (candidates.py) the heavy limb's shoulder went from
    2.57-2.66 to 2.09-2.39 deg, the default units' joints within 0.1 deg either way; with one seed it
    made one training in three much worse, which the closed-loop figure ranks last (host/EVAL.md
    "Velocity again", "Velocity and candidates: built"). Measured and not kept: the pulse history
    (`@-3`, `@-5`), the gyro (`gz`: worse) (host/EVAL.md "Excitation and inputs"). The other joint's state is already in: one model, both joints."""
    k = ahead_ticks(rate_hz, ahead)
    inputs = [f for j in joints for f in (f"{j}_deg", f"{j}_deg@-{VELOCITY_TICKS}", f"{j}_cmd_us@-1",
                                          f"{j}_target_deg@+{k}")]
    return Task("inverse", inputs, [f"{j}_cmd_us" for j in joints], options={"ahead": k}, defaults={"tune": TUNE})


def forward(joints, rate_hz):
    """A learned servo: angle, previous angle and pulse now -> the angle one tick later (offline replay)."""
    inputs = [f for j in joints for f in (f"{j}_deg", f"{j}_deg@-1", f"{j}_cmd_us")]
    return Task("forward", inputs, [f"{j}_deg@+1" for j in joints])


def sin():
    """The classic first exercise: sin(x) on [-pi, pi] with a 1-16-16-16-1 MLP (sigmoid, then relu)."""

    def data(seed):
        x = np.random.default_rng(seed).uniform(-math.pi, math.pi, (1000, 1))
        grid = np.linspace(-math.pi, math.pi, 201)[:, None]  # validation: an even grid, not training rows
        return x, np.sin(x), grid, np.sin(grid)

    return Task("sin", ["x"], ["y"], hidden=(16, 16, 16), act="relu", first_act="sigmoid", init=0.5, data=data,
                defaults={"epochs": 250, "batch": 32, "lr": 0.01, "patience": 25})  # 32 steps an epoch: 8000 in all


def xor():
    """XOR of two bits: the smallest problem a linear model cannot solve. Its four rows validate too."""

    def data(seed):
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array([[0], [1], [1], [0]], dtype=np.float64)
        return x, y, x, y

    return Task("xor", ["a", "b"], ["y"], hidden=(8,), act="sigmoid", data=data,
                defaults={"epochs": 300, "batch": 4, "lr": 0.1, "patience": 300})


TASKS = {"inverse": inverse, "forward": forward, "sin": sin, "xor": xor}
