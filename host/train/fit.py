"""The training loop: mini-batches, a cosine learning rate, early stopping, optional QAT at the end.

Deterministic for a seed: the weights' init, every shuffle (one seeded generator) and PyTorch's
kernels (deterministic algorithms, one CPU thread) follow from it, so the same seed and data give
the same weights bit for bit. One thread is also the fast choice for nets this small (~10x).
"""

import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from host.errors import UserError

OPTIMIZERS = {  # fused: one kernel per step instead of one per tensor (~25 % faster epochs here)
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, fused=True),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
}
LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of the learning rate
MIN_GAIN = 1e-3  # a validation loss must drop by this fraction to reset the patience


@dataclass
class Config:
    task: str
    hidden: tuple = (32, 32)
    act: str = "relu"
    first_act: Optional[str] = None
    init: Optional[float] = None
    optim: str = "adam"
    lr: float = 3e-3
    epochs: int = 30
    batch: Optional[int] = None  # None: auto_batch(rows)
    patience: int = 10
    qat: bool = False
    qat_fraction: float = 0.25  # of the epochs, at the end, trained quantisation-aware
    seed: int = 0
    tune: int = 0  # iterations of closed-loop tuning after the fit (tune.py; inverse task only)
    options: dict = field(default_factory=dict)  # the task's (e.g. {"ahead": 10})

    def to_dict(self):
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class History:
    """One entry per epoch run, over every run of this model (a resume appends)."""
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    qat: list = field(default_factory=list)
    train_rmse: list = field(default_factory=list)  # per epoch, per output, in normalised units: x out_std
    val_rmse: list = field(default_factory=list)  # gives each joint's error in its own unit (curves.png)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    steps: int = 0
    seconds: float = 0.0


def auto_batch(rows):
    """About 100 steps an epoch: a power of two in 32..1024 (small data: small batches, big: fast epochs)."""
    return int(np.clip(2 ** round(math.log2(max(rows, 1) / 100)), 32, 1024))


def device_for(name):
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); "
                            "train on --device cpu")
        return torch.device("cuda")
    raise UserError(f"--device {name}: give cpu or cuda")


def fit(model, x, y, xv, yv, config, history=None, optimizer_state=None, progress=True, device="cpu"):
    """Train `model` on normalised rows on `device` (cpu, cuda: where this run trains, not a setting of the
    model); returns (history, optimizer state) with the best weights loaded.

    QAT (config.qat): the last qat_fraction of the epochs, or from the moment the float phase stops
    improving, run quantisation-aware; the best weights are then the best quantisation-aware ones."""
    if config.optim not in OPTIMIZERS:
        raise UserError(f"--optim {config.optim}: give one of {', '.join(OPTIMIZERS)}")
    device = device_for(device)
    history = history or History()
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    else:
        torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(model, x, y, xv, yv, config, history, optimizer_state, device, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _fit(model, x, y, xv, yv, config, history, optimizer_state, device, progress):
    torch.manual_seed(config.seed + len(history.epoch))  # a resume draws fresh shuffles
    shuffle = torch.Generator().manual_seed(config.seed + len(history.epoch))
    x, y, xv, yv = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in (x, y, xv, yv))
    model.to(device)
    optimizer = OPTIMIZERS[config.optim](model.parameters(), config.lr)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    epochs, batch_size = config.epochs, config.batch
    qat_from = epochs - max(1, round(epochs * config.qat_fraction)) if config.qat else epochs
    bar = Progress(epochs, history.steps, enabled=bool(progress), label=progress if isinstance(progress, str) else "")
    start = time.perf_counter()

    best = None
    if history.epoch:  # resuming: the loaded weights are the ones to beat
        model.qat = config.qat and any(history.qat)
        best = _snapshot(model, optimizer, _loss(model, xv, yv))
    patience = 0
    e = 0
    while e < epochs:
        if config.qat and not model.qat and e >= qat_from:
            if best:
                _restore(model, optimizer, best)
            model.qat, best, patience = True, None, 0
        lr = config.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * e / epochs)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(x), generator=shuffle).to(device)
        xs, ys = x[order], y[order]  # one gather an epoch; the batches are then views
        total = torch.zeros((), device=device)
        columns = torch.zeros(y.shape[1], device=device)
        for i in range(0, len(x), batch_size):
            out, want = model(xs[i:i + batch_size]), ys[i:i + batch_size]
            loss = torch.nn.functional.mse_loss(out, want)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(want)
            columns += ((out.detach() - want) ** 2).sum(dim=0)
            history.steps += 1
        val, val_columns = _loss(model, xv, yv, per_output=True)
        history.epoch.append(len(history.epoch) + 1)
        history.train_loss.append(total.item() / len(x))
        history.train_rmse.append(torch.sqrt(columns / len(x)).tolist())
        history.val_rmse.append(val_columns)
        history.val_loss.append(val)
        history.lr.append(lr)
        history.qat.append(model.qat)
        bar.show(e + 1, history.train_loss[-1], val, history.steps)
        e += 1
        if best is None or val < best["val"]:
            patience = 0 if best is None or val < best["val"] * (1 - MIN_GAIN) else patience + 1
            best = _snapshot(model, optimizer, val, epoch=history.epoch[-1])
        else:
            patience += 1
        if patience >= config.patience:
            if config.qat and not model.qat:
                e = qat_from  # the float phase is done: on to the quantisation-aware one
            else:
                history.stopped_early = e < epochs
                break
    _restore(model, optimizer, best)
    history.best_epoch = best.get("epoch", history.best_epoch)
    history.best_val_loss = best["val"]
    history.seconds += time.perf_counter() - start
    bar.close()
    model.eval()
    return history, best["optimizer"]


def _loss(model, x, y, per_output=False):
    """The validation MSE; with per_output, also each output's RMSE (normalised units)."""
    model.eval()
    with torch.no_grad():
        out = model(x)
        mse = torch.nn.functional.mse_loss(out, y).item()
        return (mse, torch.sqrt(((out - y) ** 2).mean(dim=0)).tolist()) if per_output else mse


def _snapshot(model, optimizer, val, epoch=None):
    snap = {"val": val, "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()), "qat": model.qat}
    if epoch is not None:
        snap["epoch"] = epoch
    return snap


def _restore(model, optimizer, snap):
    model.load_state_dict(snap["model"])
    optimizer.load_state_dict(snap["optimizer"])
    model.qat = snap["qat"]


def predict(model, x, device="cpu"):
    """The model on normalised rows (numpy in, numpy out)."""
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32, device=device_for(device))).double().cpu().numpy()


class Progress:
    """epoch k/N, train and val loss, steps/s on stderr: redrawn in place on a terminal, a line a second otherwise.

    label: the line's prefix when several trainings share the terminal (candidates.py): each then writes a
    line every LABELLED_S instead of redrawing one."""

    LABELLED_S = 3.0

    def __init__(self, epochs, steps=0, enabled=True, stream=None, label=""):
        self.epochs, self.steps0, self.enabled, self.label = epochs, steps, enabled, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and not label
        self.every = self.LABELLED_S if label else 1.0
        self.start = self.last = time.perf_counter()
        self.line = ""

    def show(self, epoch, train, val, steps):
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (steps - self.steps0) / max(now - self.start, 1e-9)
        width = 20
        done = round(width * epoch / self.epochs)
        self.line = (f"{self.label}epoch {epoch:4d}/{self.epochs} [{'#' * done}{'.' * (width - done)}] "
                     f"train {train:.5f}  val {val:.5f}  {rate:,.0f} it/s")
        if self.tty and (now - self.last > 0.1 or epoch == self.epochs):
            self.stream.write("\r\x1b[K" + self.line)
            self.stream.flush()
            self.last = now
        elif not self.tty and now - self.last >= self.every:
            self.stream.write(self.line + "\n")
            self.last = now

    def close(self):
        if self.enabled and self.line:
            self.stream.write(("\r\x1b[K" + self.line + "\n") if self.tty else self.line + "\n")
            self.stream.flush()


def rmse(pred, truth):
    """Per-column root mean square error."""
    return np.sqrt(np.mean((np.asarray(pred) - np.asarray(truth)) ** 2, axis=0))
