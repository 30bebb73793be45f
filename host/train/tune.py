"""Closed-loop tuning: after its row-by-row fit, the inverse model is trained on what it is for, tracking.

Fitted row by row, each pulse learned from one logged moment, an inverse model leaves small biases that
add up once its own pulses feed back: on eval's sines the demo's model ran a tick ahead and 2-5 % short
of the target's swing (host/EVAL.md "Closed-loop tuning"). Here it drives SERVOS learned servos
(rollout.servo, seeds of their own: the closed-loop figure's servo stays a check the tuning never saw)
along fresh random trajectories -- steps, sines and smooth moves drawn here, none of eval's -- with the
targets shaped as the board shapes them, and its weights follow the gradient of the tracking error back
through the servos over whole runs (backpropagation through time).
"""

import math
import time

import numpy as np
import torch

from host import evaluate as ev
from host.errors import UserError
from host.sessions.stats import robot_of
from host.train import rollout

ITERATIONS = 40  # the inverse task's default (--tune): ~8 s on one core; EVAL.md "Closed-loop tuning"
SERVOS = 2  # the tracking error is averaged over this many servo models: one's quirks are not learned as the robot's
SERVO_SEED = 1000  # + the training seed + k: not the closed-loop figure's servo (the training seed itself)
RUNS, TICKS, LEAD = 32, 150, 20  # an iteration's batch of runs, each run's ticks and its unscored lead-in
LR = 3e-4
STEP_DEG = (2.0, 45.0)  # the random steps' sizes, levels within +-LEVEL_DEG, held HOLD_S
LEVEL_DEG, HOLD_S = 60.0, (0.3, 0.7)
SINE_HZ, SINE_DEG, SINE_PEAK_DEG_S = (0.3, 2.5), (5.0, 45.0), 150.0  # eval's sines peak at ~150 deg/s too


def tune(net, sessions, iterations=ITERATIONS, seed=0, n_val=None, preview=None, say=None):
    """Train the inverse Net `net` (its .model, in place) for `iterations` batches of closed-loop runs through
    learned servos of `sessions`; what it did, for metrics.json "tune", or {"note": why} when the sessions give
    the servo model no rows (the model is then left as fitted). preview: the blob's meta `preview`."""
    started = time.perf_counter()
    joints, rate = robot_of(sessions)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these nets are too small for more (fit.py)
    try:
        try:
            servos = [rollout.servo(sessions, seed + SERVO_SEED + k, n_val) for k in range(SERVOS)]
        except UserError as e:
            return {"note": f"not tuned: no servo model: {e}"}
        for s, _ in servos:
            s.model.eval()
            s.model.requires_grad_(False)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed + SERVO_SEED)
        optimizer = torch.optim.Adam(net.model.parameters(), lr=LR)
        net.model.train()
        losses = []
        for i in range(iterations):
            targets = runs(rng, RUNS, TICKS + LEAD, len(joints), rate)
            read = np.stack([rollout.shaped(t, preview) for t in targets])
            targets, read = (torch.as_tensor(a, dtype=torch.float32) for a in (targets, read))
            loss = sum(((rollout.simulate(net, s, joints, targets, read) - targets)[:, LEAD:] ** 2).mean()
                       for s, _ in servos) / len(servos)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(math.sqrt(loss.item()))
            if say and (i + 1) % 10 == 0:
                say(f"tuning {i + 1}/{iterations}: tracking {np.mean(losses[-10:]):.2f}° over the last 10 batches of "
                    f"{RUNS} runs through {len(servos)} learned servos")
        net.model.eval()
    finally:
        torch.set_num_threads(threads)
    first, last = (float(np.mean(losses[:5])), float(np.mean(losses[-5:]))) if losses else (None, None)
    return {"iterations": iterations, "servos": [about for _, about in servos], "runs": RUNS, "ticks": TICKS,
            "lr": LR, "tracking_deg": [_r(first), _r(last)], "seconds": round(time.perf_counter() - started, 2)}


def runs(rng, n, ticks, joints, rate_hz):
    """n random target runs [n, ticks, joints] deg: each joint of each run steps, sines or moves smoothly."""
    out = np.zeros((n, ticks, joints))
    t = np.arange(ticks) / rate_hz
    for r in range(n):
        for j in range(joints):
            kind = rng.integers(3)
            if kind == 0:
                levels, level = [], rng.uniform(-LEVEL_DEG / 3, LEVEL_DEG / 3)
                while len(levels) < ticks:
                    levels += [level] * max(1, round(rng.uniform(*HOLD_S) * rate_hz))
                    level = float(np.clip(level + rng.choice((-1, 1)) * rng.uniform(*STEP_DEG), -LEVEL_DEG, LEVEL_DEG))
                out[r, :, j] = levels[:ticks]
            elif kind == 1:
                f = rng.uniform(*SINE_HZ)
                amp = min(rng.uniform(*SINE_DEG), SINE_PEAK_DEG_S / (2 * math.pi * f))
                out[r, :, j] = amp * np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
            else:
                out[r, :, j] = ev._smooth_random(rng, t, ticks / rate_hz)
    return out


def _r(v):
    return None if v is None else round(v, 3)
