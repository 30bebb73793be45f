"""A training figure that predicts closed-loop tracking, not only per-row pulse error.

The inverse model drives a learned servo: the `forward` task (angle, previous angle, pulse -> the next
angle), trained on the same sessions, stands in for the robot, and the inverse model picks each tick's
pulse from the simulated angle, its own previous pulse and the target K ticks ahead, along `host eval`'s
held-out trajectories (host/evaluate.py: steps, sines, random). The figure is the RMSE of the simulated
angle against the target over the trajectories' bodies, per joint: what `host eval` measures on the
robot, through a model of the robot (TRAIN.md "Closed-loop figure").
"""

import time

import numpy as np
import torch

from polyniod_firmware import features, preview as shaping

from host.errors import UserError
from host.sessions.stats import robot_of
from host.train.dataset import from_sessions, normalisation
from host.train.fit import Config, auto_batch, fit, predict
from host.train.model import MLP
from host.train.tasks import Task

OUT_OF_RANGE_DEG = 120.0  # a rollout whose angle leaves +-this has diverged: the angle is held there


LATENCY_PULSES = (2, 4, 6, 8)  # forward_task(): the pulses this many ticks back feed the learned servo too


def forward_task(joints, rate_hz):
    """The learned servo: angle now and a tick before, the pulse now and LATENCY_PULSES ticks back -> the angle
    a tick later. The SG90 answers a pulse ~50 ms late (5 ticks at 100 Hz): tasks.forward's (angle, previous
    angle, pulse) cannot know the pulses still on their way, and its rollouts ranked models worse (TRAIN.md)."""
    back = [round(k * rate_hz / 100) for k in LATENCY_PULSES]
    inputs = [f for j in joints for f in (f"{j}_deg", f"{j}_deg@-1", f"{j}_cmd_us", *(f"{j}_cmd_us@-{k}" for k in back))]
    return Task("forward_servo", inputs, [f"{j}_deg@+1" for j in joints])


class Net:
    """A float model as a function of physical rows: inputs by name -> outputs in their units."""

    def __init__(self, model, norm, inputs, outputs):
        self.model, self.inputs, self.outputs, self._predict = model, list(inputs), list(outputs), predict
        self.norm = [np.asarray(v, dtype=np.float64) for v in norm]  # in mean, in std, out mean, out std

    @classmethod
    def of(cls, checkpoint):
        from host.train.checkpoint import build

        n = checkpoint["norm"]
        return cls(build(checkpoint), [n[k] for k in ("in_mean", "in_std", "out_mean", "out_std")],
                   checkpoint["inputs"], checkpoint["outputs"])

    def __call__(self, x):
        in_mean, in_std, out_mean, out_std = self.norm
        return self._predict(self.model, (np.asarray(x, np.float64) - in_mean) / in_std) * out_std + out_mean

    def tensor(self, x):
        """The net on a float tensor of physical rows [n, inputs] -> [n, outputs], differentiable."""
        if not hasattr(self, "_norm_t"):
            self._norm_t = [torch.as_tensor(v, dtype=torch.float32) for v in self.norm]
        in_mean, in_std, out_mean, out_std = self._norm_t
        return self.model((x - in_mean) / in_std) * out_std + out_mean


def servo(sessions, seed=0, n_val=None):
    """A forward_task Net trained on `sessions` (the last n_val validating) and its one-tick error per joint (deg);
    UserError when the sessions give it no rows."""
    joints, rate = robot_of(sessions)
    task = forward_task(joints, rate)
    data = from_sessions(sessions, task, n_val=n_val or None)
    norm = normalisation(data.x_train, data.y_train)
    config = Config(task=task.name, seed=seed)
    config.batch = auto_batch(len(data.x_train))
    torch.manual_seed(seed)
    model = MLP(len(task.inputs), config.hidden, len(task.outputs), config.act)
    in_mean, in_std, out_mean, out_std = norm
    fit(model, (data.x_train - in_mean) / in_std, (data.y_train - out_mean) / out_std, (data.x_val - in_mean) / in_std,
        (data.y_val - out_mean) / out_std, config, progress=False)
    model.cpu()
    net = Net(model, norm, task.inputs, task.outputs)
    err = np.sqrt(np.mean((net(data.x_val) - data.y_val) ** 2, axis=0))
    return net, {"task": task.name, "inputs": task.inputs, "val_rmse_deg": dict(zip(joints, np.round(err, 3).tolist())),
                 "rows": len(data.x_train)}


def figure(sessions, inverse, seed=0, n_val=None, preview=None):
    """metrics.json's "closed_loop" of an inverse Net trained on `sessions` (the last n_val validating): a
    servo() trained on the same sessions and split, then closed_loop(); {"note": why} when the inverse
    reads inputs the rollout cannot make or the sessions give the servo model no rows. preview: the blob's meta
    `preview`, when the model reads shaped targets on the board."""
    started = time.perf_counter()
    joints, rate = robot_of(sessions)
    if not drives(inverse, joints):
        return {"note": "the model reads inputs other than the joints' angles, pulses and targets: no rollout"}
    try:
        forward, about = servo(sessions, seed, n_val)
    except UserError as e:
        return {"note": f"no servo model: {e}"}
    out = closed_loop(inverse, forward, joints, rate, preview=preview)
    out.update(forward=about, seconds=round(time.perf_counter() - started, 2))
    return out


def drives(inverse, joints):
    """Whether the inverse net reads only what a rollout makes: the joints' angles, pulses and targets."""
    known = {f"{j}_{s}" for j in joints for s in ("deg", "cmd_us", "target_deg")}
    return all(features.parse(f)[0] in known for f in inverse.inputs)


def closed_loop(inverse, forward, joints, rate_hz, names=None, seconds=None, preview=None):
    """{"rmse_deg": {joint: pooled over the trajectories}, "trajectories": {name: {joint: rmse}}} of the inverse
    net driving the forward net along eval's trajectories (rollout Nets: simulate() reads .tensor and the names).
    preview: [window, slew per joint] (meta `preview`): the inverse reads the targets shaped as on the board."""
    from host import evaluate as ev

    plan = ev.trajectories(len(joints), rate_hz, names or ev.TRAJECTORIES, seconds or ev.SECONDS)
    per, sq, n = {}, dict.fromkeys(joints, 0.0), 0
    for traj in plan:
        angle = _run(inverse, forward, joints, traj.targets, shaped(traj.targets, preview))
        body = slice(traj.lead_in, len(traj.targets))
        err = angle[body] - traj.targets[body]
        per[traj.name] = {j: round(float(np.sqrt(np.mean(err[:, i] ** 2))), 3) for i, j in enumerate(joints)}
        for i, j in enumerate(joints):
            sq[j] += float(np.sum(err[:, i] ** 2))
        n += len(err)
    return {"rmse_deg": {j: round(float(np.sqrt(sq[j] / n)), 3) for j in joints}, "trajectories": per}


def shaped(targets, preview):
    """The targets [ticks, joints] deg as the board's model reads them: through preview.py's kernel, or as they are."""
    if not preview:
        return targets
    cdeg = [[round(float(v) * 100) for v in targets[:, i]] for i in range(targets.shape[1])]
    return np.column_stack(shaping.shaped(cdeg, preview[0], preview[1:])) / 100


def _run(inverse, forward, joints, targets, read=None):
    """The simulated angles [ticks, joints] of one closed-loop run from rest at the first target (numpy)."""
    with torch.no_grad():
        x = [torch.as_tensor(np.asarray(a, np.float32)[None]) for a in (targets, targets if read is None else read)]
        return simulate(inverse, forward, joints, *x)[0].double().numpy()


def simulate(inverse, forward, joints, targets, read):
    """Closed-loop runs, a batch at once: the angles [runs, ticks, joints] (a float tensor) of the inverse net
    driving the forward net from rest at each run's first target; targets and read (what the inverse reads
    as its targets: shaped, or the targets themselves) are float tensors [runs, ticks, joints]. Differentiable
    through both nets (tune.py trains the inverse through it). Before the run the pulses are the training
    rows' mean and the angles the first target's; beyond its end the targets hold their last value."""
    runs, ticks, _ = targets.shape
    cols = {f"{j}_deg": [targets[:, 0, i]] for i, j in enumerate(joints)}
    rest = {}
    for k, o in enumerate(inverse.outputs):
        cols[o.partition("@")[0]] = []
        rest[o.partition("@")[0]] = torch.full((runs,), float(inverse.norm[2][k]))
    target = {f"{j}_target_deg": i for i, j in enumerate(joints)}

    def at(column, t):
        if column in target:
            return read[:, min(t, ticks - 1), target[column]]
        if t < 0:
            return cols[column][0] if column not in rest else rest[column]
        return cols[column][t]

    inv, fwd = [features.parse(f) for f in inverse.inputs], [features.parse(f) for f in forward.inputs]
    inv_out, fwd_out = [o.partition("@")[0] for o in inverse.outputs], [o.partition("@")[0] for o in forward.outputs]
    for t in range(ticks - 1):
        pulse = inverse.tensor(torch.stack([at(s, t + k) for s, k in inv], 1))
        for n, name in enumerate(inv_out):
            cols[name].append(pulse[:, n])
        angle = forward.tensor(torch.stack([at(s, t + k) for s, k in fwd], 1)).clamp(-OUT_OF_RANGE_DEG, OUT_OF_RANGE_DEG)
        for n, name in enumerate(fwd_out):
            cols[name].append(angle[:, n])
    return torch.stack([torch.stack(cols[f"{j}_deg"], 1) for j in joints], 2)
