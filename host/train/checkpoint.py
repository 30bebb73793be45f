"""A model directory: checkpoint.pt, metrics.json, curves.png, model.bin -- written whole or not at all.

The checkpoint holds only tensors, dicts, lists, strings and numbers, so it loads with
torch.load(weights_only=True): opening a model someone sent you runs no code. The directory is
built under a temporary name beside its destination and renamed into place.
"""

import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from host.errors import UserError

FORMAT = 1
FILES = ("checkpoint.pt", "metrics.json", "curves.png", "model.bin")


def to_bytes(checkpoint):
    import torch  # here, not at the top: candidates.py installs directories without loading PyTorch

    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    return buf.getvalue()


def save(out_dir, checkpoint_bytes, metrics, blob, history):
    """Write the four files into out_dir atomically, replacing what was there."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 is for secrets; a model directory is a plain one
        for name, data in (("checkpoint.pt", checkpoint_bytes), ("model.bin", blob), ("metrics.json", _json(metrics))):
            _write(tmp / name, data)
        plot_curves(history, tmp / "curves.png", metrics)
        install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install(built, out_dir):
    """Rename the model directory `built` (on out_dir's file system) into place, replacing what was there."""
    out = Path(out_dir)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.rename(out, old / out.name)
    os.rename(built, out)
    if old:
        shutil.rmtree(old)


def rewrite_metrics(model_dir, metrics):
    """Replace a model directory's metrics.json whole (a temp file renamed over it)."""
    path = Path(model_dir) / "metrics.json"
    tmp = path.with_name(".metrics.json.tmp")
    _write(tmp, _json(metrics))
    os.replace(tmp, path)


def _json(metrics):
    return (json.dumps(metrics, indent=1, allow_nan=False) + "\n").encode()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load(path):
    """The checkpoint dict of a model directory (or of its checkpoint.pt)."""
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"no model at {path}: a model directory holds checkpoint.pt (see `host models`)")
    import torch

    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0])
        raise UserError(f"{file} is not a checkpoint this version loads ({why})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"{file}: checkpoint format {checkpoint.get('format') if isinstance(checkpoint, dict) else '?'}"
                        f", this version reads {FORMAT}")
    return checkpoint


def build(checkpoint):
    """The MLP of a checkpoint with its weights (and its quantisation-aware state)."""
    from host.train.model import MLP

    c = checkpoint["config"]
    model = MLP(len(checkpoint["inputs"]), c["hidden"], len(checkpoint["outputs"]), c["act"], c["first_act"])
    model.load_state_dict(checkpoint["state_dict"])
    model.qat = bool(checkpoint.get("qat"))
    model.eval()
    return model


def plot_curves(history, path, metrics=None):
    """Training and validation error per epoch (log scale), the quantisation-aware epochs shaded; returns the figure.

    With the metrics' target_std, each output's RMSE in its own unit (the loss is an MSE over targets divided
    by their std, so error x std is the unit's); else the normalised MSE, as the optimiser saw it."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from host.files import save_figure
    from host.train.dataset import output_label

    epochs = history["epoch"]
    std = (metrics or {}).get("target_std")
    per_output = bool(std) and len(history.get("val_rmse") or []) == len(epochs) == len(history.get("train_rmse") or [])
    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    if per_output:
        units = {output_label(o)[2] for o in std}
        for i, (o, s) in enumerate(std.items()):
            what, colour = " ".join(filter(None, output_label(o)[:2])), f"C{i}"
            ax.plot(epochs, [v[i] * s for v in history["val_rmse"]], color=colour, lw=1.8, label=f"{what}: validation")
            ax.plot(epochs, [v[i] * s for v in history["train_rmse"]], color=colour, lw=1.2, ls="--",
                    label=f"{what}: training")
            linear = metrics.get("baseline_rmse", {}).get("linear", {}).get(o)
            if linear:
                ax.axhline(linear, color=colour, lw=1, ls=":", label=f"{what}: linear fit (validation)")
        unit = units.pop() if len(units) == 1 else ""
        ax.set_ylabel(f"RMSE ({unit})" if unit else "RMSE (each output's unit)")
        values = [v * s for row in history["val_rmse"] + history["train_rmse"] for v, s in zip(row, std.values())]
    else:
        ax.plot(epochs, history["train_loss"], lw=1.2, ls="--", label="training")
        ax.plot(epochs, history["val_loss"], lw=1.8, label="validation")
        ax.set_ylabel("MSE of the targets / their std (normalised, no unit)")
        values = history["train_loss"] + history["val_loss"]
    qat = [e for e, q in zip(epochs, history["qat"]) if q]
    if qat:
        ax.axvspan(qat[0] - 0.5, qat[-1] + 0.5, color="0.9", label="quantisation-aware epochs")
    if history["best_epoch"]:
        ax.axvline(history["best_epoch"], color="0.4", linestyle=":", label=f"best epoch ({history['best_epoch']}): kept")
    if values and all(v > 0 and math.isfinite(v) for v in values):
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)))  # 120, 150: labelled
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(matplotlib.ticker.FormatStrFormatter("%.3g"))  # 60, 70, 100: not 6x10^1
    ax.set_xlabel("epoch")
    ax.grid(True, which="both", color="0.92")
    name = (metrics or {}).get("name")
    task = (metrics or {}).get("task")
    ax.set_title(f"training curves of {name or 'the model'}" + (f" ({task})" if task else "")
                 + (": held-out RMSE per output" if per_output else ": loss"), fontsize=12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=10, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return fig
