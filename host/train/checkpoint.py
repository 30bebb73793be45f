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

import torch

from host.errors import UserError
from host.train.model import MLP

FORMAT = 1
FILES = ("checkpoint.pt", "metrics.json", "curves.png", "model.bin")


def to_bytes(checkpoint):
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
        for name, data in (("checkpoint.pt", checkpoint_bytes), ("model.bin", blob),
                           ("metrics.json", (json.dumps(metrics, indent=1, allow_nan=False) + "\n").encode())):
            _write(tmp / name, data)
        plot_curves(history, tmp / "curves.png")
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rename(out, old / out.name)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    c = checkpoint["config"]
    model = MLP(len(checkpoint["inputs"]), c["hidden"], len(checkpoint["outputs"]), c["act"], c["first_act"])
    model.load_state_dict(checkpoint["state_dict"])
    model.qat = bool(checkpoint.get("qat"))
    model.eval()
    return model


def plot_curves(history, path):
    """Training and validation loss per epoch (log scale), the quantisation-aware epochs shaded."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=80)
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    qat = [e for e, q in zip(history["epoch"], history["qat"]) if q]
    if qat:
        ax.axvspan(qat[0] - 0.5, qat[-1] + 0.5, color="0.9", label="quantisation-aware")
    if history["best_epoch"]:
        ax.axvline(history["best_epoch"], color="0.5", linestyle=":", label="best")
    if all(v > 0 and math.isfinite(v) for v in history["train_loss"] + history["val_loss"]):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalised)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
