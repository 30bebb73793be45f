"""Sessions -> rows of a task -> a PyTorch MLP -> a model directory with the device's blob.

`train(task, sessions, out, **settings)` trains a new model, `resume(model_dir, epochs)` continues
one; both write the directory (checkpoint.py) and return its metrics.
"""

import json
import math
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from host import __version__
from host.calibration import calibrate
from host.errors import UserError
from host.export.quantize import export, int8_error
from host.export.reference import Reference
from host.sessions.stats import check_warnings, robot_of
from host.train import checkpoint as ckpt, rollout, tune
from host.train.dataset import (from_sessions, load_sessions, normalisation, of_unit, output_label, synthetic,
                                task_for)
from host.train.fit import Config, History, auto_batch, device_for, fit, predict, rmse
from host.train.model import MLP
from polyniod_firmware import features, mlp, preview


def train(task, sessions=(), out=None, progress=True, ahead=None, device=None, unit=None, val=None, warn=True,
          **settings):
    """Train a new model of `task` on sessions (paths, names or loaded Sessions); write `out`; its metrics.

    Sessions of several boards are pooled; unit (a board's unit id) keeps only that board's. metrics.json's
    "units" says whose sessions the model learned from.
    settings: any Config field (hidden, act, optim, lr, epochs, batch, patience, qat, seed);
    None or missing means the task's default, then Config's. ahead: the inverse task's look-ahead.
    device (cpu, default; cuda) and progress are choices of this run, not settings of the model:
    the checkpoint keeps neither, and a resume picks its own. val: how many of the last sessions validate
    (default: dataset.from_sessions' rule), so that sessions added later (host learn's rounds) train.
    warn: print the sessions' and the model's warnings (a candidate's are printed by candidates.py)."""
    started = time.perf_counter()
    device = _device(device)
    loaded = of_unit(load_sessions(sessions), unit)
    if warn:
        for line in check_warnings(loaded):
            print(f"warning: {line}", file=sys.stderr)
    t = task_for(task, loaded, **({} if ahead is None else {"ahead": ahead}))
    config = _config(t, settings)
    data = synthetic(t, config.seed) if t.data else from_sessions(loaded, t, n_val=val)
    norm = normalisation(data.x_train, data.y_train)
    torch.manual_seed(config.seed)
    model = MLP(len(t.inputs), config.hidden, len(t.outputs), config.act, config.first_act, config.init)
    return _train_and_save(model, data, norm, config, History(), None, out or Path("models") / task,
                           progress, device, started, loaded, warn)


def resume(model_dir, epochs=None, sessions=None, progress=True, device=None, unit=None):
    """Continue training the model in model_dir for `epochs` more (default: as many as before), from its
    best weights and optimizer state, on the sessions it was trained on (or the ones given, of `unit` only
    when given), on `device`
    (default cpu) whichever device it was trained on: the checkpoint loads onto the CPU first."""
    started = time.perf_counter()
    device = _device(device)
    checkpoint = ckpt.load(model_dir)
    # fields only: a checkpoint of an older version also holds "device", a choice of that run, ignored here
    config = Config(**{f.name: checkpoint["config"][f.name] for f in fields(Config) if f.name in checkpoint["config"]})
    config.hidden = tuple(config.hidden)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs {epochs}: give a whole number >= 1")
        config.epochs = int(epochs)
    paths = sessions if sessions else checkpoint["sessions"]
    loaded = of_unit(load_sessions(paths, hint=f" (it trained {model_dir}; give the sessions to resume on)"), unit)
    t = task_for(config.task, loaded, **config.options)
    data = synthetic(t, config.seed) if t.data else from_sessions(loaded, t)
    if (list(t.inputs), list(t.outputs)) != (checkpoint["inputs"], checkpoint["outputs"]):
        raise UserError(f"{model_dir} maps {checkpoint['inputs']} -> {checkpoint['outputs']}, "
                        f"but these sessions give {t.inputs} -> {t.outputs}")
    n = checkpoint["norm"]
    norm = tuple(np.asarray(n[k], dtype=np.float64) for k in ("in_mean", "in_std", "out_mean", "out_std"))
    history = History(**checkpoint["history"])
    return _train_and_save(ckpt.build(checkpoint), data, norm, config, history, checkpoint["optimizer"],
                           Path(model_dir), progress, device, started, loaded)


def _device(name):
    """The run's device name, checked before any session is read (cpu when not given)."""
    name = name or "cpu"
    device_for(name)
    return name


def _train_and_save(model, data, norm, config, history, optimizer_state, out, progress, device, started, loaded=(),
                    warn=True):
    in_mean, in_std, out_mean, out_std = norm
    config.batch = config.batch or auto_batch(len(data.x_train))
    loaded_s = time.perf_counter() - started
    history, optimizer_state = fit(model, (data.x_train - in_mean) / in_std, (data.y_train - out_mean) / out_std,
                                   (data.x_val - in_mean) / in_std, (data.y_val - out_mean) / out_std, config,
                                   history, optimizer_state, progress, device)
    train_s = history.seconds
    model.cpu()
    drive = {**guard_meta(data, loaded), **preview_meta(data, loaded)}
    n_val = sum(1 for i in data.sessions if i["role"] == "val")
    tuned = None
    if config.tune and config.task == "inverse" and loaded:  # tracking, trained through learned servos (tune.py)
        net = rollout.Net(model, norm, data.inputs, data.outputs)
        if rollout.drives(net, robot_of(loaded)[0]):
            label = progress if isinstance(progress, str) else ""
            tuned = tune.tune(net, loaded, config.tune, config.seed, n_val, drive.get("preview"),
                              say=(lambda line: print(label + line, file=sys.stderr)) if progress else None)
    exported = time.perf_counter()
    layers = model.layers()
    out = Path(out)
    blob = export(layers, (data.x_train - in_mean) / in_std, in_mean, in_std, out_mean, out_std,
                  data.inputs, data.outputs, config.task,
                  meta={"name": out.name, **({"rate_hz": data.rate_hz} if data.rate_hz else {}), **config.options,
                        **drive})
    checkpoint = {
        "format": ckpt.FORMAT, "task": config.task, "config": config.to_dict(), "qat": model.qat,
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "optimizer": _on_cpu(optimizer_state),
        "norm": {k: v.tolist() for k, v in zip(("in_mean", "in_std", "out_mean", "out_std"), norm)},
        "inputs": list(data.inputs), "outputs": list(data.outputs), "rate_hz": data.rate_hz,
        "sessions": [s["path"] for s in data.sessions], "history": _jsonable(asdict(history)),
        "created": _now(), "software": {"polyniod": __version__, "torch": str(torch.__version__)},
    }
    checkpoint_bytes = ckpt.to_bytes(checkpoint)
    metrics = _metrics(model, layers, blob, data, norm, config, history, out.name)
    if drive.get("preview"):  # what the board's model reads (preview.py): the window and each joint's speed
        window, *slews = drive["preview"]
        metrics["preview"] = {"window_s": round(window / data.rate_hz, 3),
                              "slew_deg_s": dict(zip(robot_of(loaded)[0], (round(v * data.rate_hz / 100) for v in slews)))}
    if config.task == "inverse" and loaded:  # a figure that predicts closed-loop tracking (rollout.py, TRAIN.md)
        metrics["closed_loop"] = rollout.figure(loaded, rollout.Net(model, norm, data.inputs, data.outputs), config.seed,
                                                n_val, drive.get("preview"))
    if tuned:
        metrics["tune"] = tuned
    metrics["sizes"] = {"parameters": sum(p.numel() for p in model.parameters()), "blob_bytes": len(blob),
                        "checkpoint_bytes": len(checkpoint_bytes)}
    metrics["timings"] = {"load_s": round(loaded_s, 3), "train_s": round(train_s, 3),
                          "export_s": round(time.perf_counter() - exported, 3),
                          "total_s": round(time.perf_counter() - started, 3),
                          "steps_per_s": round(history.steps / train_s) if train_s else None,
                          "device": device}  # where this run trained: a fact of the run, not of the model
    metrics["warnings"] = losing_to_linear(metrics)
    ckpt.save(out, checkpoint_bytes, metrics, blob, checkpoint["history"])
    metrics["path"] = str(out)
    for line in metrics["warnings"] if warn else ():
        print(f"warning: {line}", file=sys.stderr)
    return metrics


def guard_meta(data, loaded):
    """The blob's guard of a model that drives joints (firmware/MLP.md "The learned region"): each input's
    range over the training rows (`in_range`, its own units) and the linear calibration of the sessions as the
    fallback (`fallback_lin`: a, b per output); {} for other models. Without enough settled samples for the
    calibration the device falls back to robot.json's nominal map (a warning says so)."""
    if not data.outputs or not all(o.endswith("_cmd_us") for o in data.outputs) or not len(data.x_train):
        return {}
    lo, hi = data.x_train.min(axis=0), data.x_train.max(axis=0)
    meta = {"in_range": [[_round_to(a, -1), _round_to(b, 1)] for a, b in zip(lo, hi)]}
    try:
        cal = calibrate(loaded)
    except UserError as e:
        print(f"warning: no fallback calibration in the blob ({e}); the board falls back to robot.json's nominal map",
              file=sys.stderr)
        return meta
    joints = [o[:-len("_cmd_us")] for o in data.outputs]
    if not all(j in cal["joints"] for j in joints):
        return meta
    meta["fallback_lin"] = [v for j in joints for v in cal["lin"][2 * cal["joints"].index(j):][:2]]
    names = len(json.dumps([data.inputs, data.outputs, meta]))
    if names > mlp.MAX_META - 256:  # the names and the rest of meta come first: a guard that does not fit is left out
        print(f"warning: no guard in the blob: {len(data.inputs)} inputs' names and ranges take {names} of the "
              f"{mlp.MAX_META} bytes of meta", file=sys.stderr)
        return {}
    return meta


def preview_meta(data, loaded):
    """Meta `preview` (polyniod_firmware/preview.py) of a model that drives joints from targets: the window at the
    sessions' rate, and each joint's slew, SLEW_SHARE of its speed in the sessions (the 99th percentile over
    3 ticks, so that one noisy reading does not count) in 0.01 deg a tick; {} for other models."""
    if not data.outputs or not all(o.endswith("_cmd_us") for o in data.outputs) or not loaded or not data.rate_hz:
        return {}
    ahead = [features.parse(f)[1] for f in data.inputs if features.parse(f)[0].endswith(features.TARGET)]
    window = min(preview.window_ticks(data.rate_hz), features.MAX_FUTURE - max(ahead or [0]))
    if not ahead or window < 1:
        return {}
    joints, _ = robot_of(loaded)
    slews = []
    for j in joints:
        speeds = [np.abs(x[3:] - x[:-3]) / 3 for x in (np.asarray(s.columns[f"{j}_deg"], float) for s in loaded) if len(x) > 3]
        v = np.concatenate(speeds) if speeds else np.zeros(0)
        v = v[np.isfinite(v)]
        if not len(v):
            return {}
        slews.append(max(1, int(preview.SLEW_SHARE * float(np.percentile(v, 99)) * 100)))
    return {"preview": [window] + slews}


def _round_to(v, direction):
    """v to 4 significant digits, rounded away from the range's inside (direction -1: down, 1: up)."""
    if v == 0 or not math.isfinite(v):
        return float(v)
    step = 10.0 ** (math.floor(math.log10(abs(v))) - 3)
    return round((math.floor if direction < 0 else math.ceil)(v / step) * step, 10)


def losing_to_linear(metrics):
    """A line per output where the network's held-out error (float or int8) is above the least-squares linear
    fit's: that joint is better served by the linear calibration until the model is trained better."""
    lines = []
    for o in metrics["outputs"]:
        net, q, lin = metrics["val_rmse"][o], metrics["int8"]["val_rmse"][o], metrics["baseline_rmse"]["linear"][o]
        if max(net, q) > lin:
            joint, quantity, unit = output_label(o)
            u = f" {unit}" if unit else ""
            lines.append(f"{' '.join(filter(None, (joint, quantity)))}: the model's validation RMSE {net:.3g}{u} "
                         f"(int8 {q:.3g}) is worse than the linear fit's {lin:.3g}{u}: train longer (--epochs) or on more "
                         f"varied sessions" + (", or use the linear calibration for this joint" if quantity else ""))
    return lines


def _metrics(model, layers, blob, data, norm, config, history, name):
    in_mean, in_std, out_mean, out_std = norm
    pred = predict(model, (data.x_val - in_mean) / in_std) * out_std + out_mean
    ref = Reference(blob)
    per_output = lambda v: {o: float(x) for o, x in zip(data.outputs, v)}  # noqa: E731
    vs_float = int8_error(layers, blob, data.x_val)
    best = history.best_epoch
    return {
        "name": name, "task": config.task, "created": _now(), "inputs": list(data.inputs),
        "outputs": list(data.outputs), "rate_hz": data.rate_hz, "config": config.to_dict(), "split": data.split,
        "sessions": data.sessions, "units": data.units,
        "rows": {"train": len(data.x_train), "val": len(data.x_val), "dropped": data.dropped},
        "epochs_run": len(history.epoch), "best_epoch": best, "stopped_early": history.stopped_early,
        "steps": history.steps, "qat": bool(model.qat),
        "train_loss": history.train_loss[best - 1] if best else None, "val_loss": history.best_val_loss,
        "val_rmse": per_output(rmse(pred, data.y_val)),
        "target_std": per_output(out_std),  # what the loss is normalised by: curves.png's RMSE in units
        "baseline_rmse": {"mean": per_output(rmse(np.broadcast_to(out_mean, data.y_val.shape), data.y_val)),
                          "linear": per_output(rmse(_linear_fit(data)(data.x_val), data.y_val))},
        "int8": {"val_rmse": per_output(rmse(ref.infer(data.x_val), data.y_val)),
                 "vs_float": {k: per_output(v) for k, v in vs_float.items() if k != "n"}},
        "model_id": f"{ref.model_id:08x}", "blob_task": ref.task,
    }


def _linear_fit(data):
    """Least squares on the training rows: the baseline a network has to beat."""
    a = np.hstack([data.x_train, np.ones((len(data.x_train), 1))])
    coef = np.linalg.lstsq(a, data.y_train, rcond=None)[0]
    return lambda x: np.hstack([x, np.ones((len(x), 1))]) @ coef


def _config(task, settings):
    known = {f.name for f in fields(Config)}
    unknown = set(settings) - known
    if unknown:
        raise TypeError(f"unknown training settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in settings.items() if v is not None}
    config = Config(task=task.name, hidden=tuple(given.pop("hidden", task.hidden)), act=given.pop("act", task.act),
                    first_act=None if "act" in settings and settings["act"] else task.first_act, init=task.init,
                    options=dict(task.options), **{**task.defaults, **given})
    if config.act not in mlp.ACTIVATIONS:
        raise UserError(f"--act {config.act}: give {', '.join(mlp.ACTIVATIONS[:-1])} or {mlp.ACTIVATIONS[-1]}")
    for what, value in (("--epochs", config.epochs), ("--batch", config.batch), ("--patience", config.patience)):
        if value is not None and value < 1:
            raise UserError(f"{what} {value}: give a whole number >= 1")
    if not config.lr > 0:
        raise UserError(f"--lr {config.lr}: give a learning rate > 0")
    if any(h < 1 for h in config.hidden):
        raise UserError(f"--hidden {','.join(map(str, config.hidden))}: layer widths are >= 1")
    return config


def _on_cpu(value):
    """The optimizer state with every tensor moved to the CPU: a checkpoint written on a GPU loads anywhere."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def _jsonable(d):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
