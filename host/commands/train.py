"""`host train`: sessions -> a trained model directory (checkpoint, metrics, curves, device blob)."""

import json
import os
import sys
import tempfile
from pathlib import Path

from host.errors import UserError
from host.train.tasks import TASKS
from polyniod_firmware import mlp

MAX_LR = 10.0  # beyond any rate that trains (Adam's usual 1e-3..1e-2; SGD's at most ~1)
MAX_SEED = (1 << 32) - 1
MAX_TUNE = 10_000  # ~30 min of closed-loop tuning
# What a model was trained with, kept by --resume: its shape and inputs (task, hidden, act, ahead), and the
# training settings that decide its weights for a seed (optim, lr, batch, patience, seed; --qat). batch is one:
# it sets the steps an epoch and the gradient noise, so the same seed on another batch gives other weights,
# and these nets fit any device's memory. Not kept: --device, --quiet, --json (how this run goes) and
# --epochs (how many more).
SETTINGS = ("task", "hidden", "act", "optim", "lr", "batch", "patience", "ahead", "seed", "tune")


def add_parser(sub):
    p = sub.add_parser("train", help="train a model on recorded sessions (or a built-in exercise: sin, xor)")
    p.add_argument("sessions", nargs="*", metavar="SESSION", help="session files or names (see `host sessions`)")
    p.add_argument("--unit", metavar="ID", help="learn only from the sessions of this board (its unit id, see "
                   "`host sessions`; default: pool the sessions of every board given)")
    p.add_argument("--task", choices=list(TASKS), help="what to learn (host/train/tasks.py); default inverse")
    p.add_argument("--hidden", type=widths, metavar="W,W", help="hidden layer widths, e.g. 32,32 (default: the task's)")
    p.add_argument("--act", choices=mlp.ACTIVATIONS, help="hidden activation (default: the task's)")
    p.add_argument("--optim", choices=["adam", "sgd", "rmsprop"], help="optimizer (default adam)")
    p.add_argument("--lr", type=float, help="peak learning rate, cosine schedule (default: the task's)")
    p.add_argument("--epochs", type=int, help="epochs (with --resume: how many more; default: the task's)")
    p.add_argument("--batch", type=int, help="mini-batch rows (default: ~100 steps an epoch)")
    p.add_argument("--patience", type=int, help="epochs without a better validation loss before stopping (default: the task's)")
    p.add_argument("--ahead", type=int, metavar="TICKS", help="inverse: ticks the target lies ahead (default ~50 ms)")
    p.add_argument("--qat", action="store_true", help="train the last quarter quantisation-aware (int8)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where to train (default cpu; with --resume too, "
                   "whichever device the model was trained on)")
    p.add_argument("--seed", type=int, help="seed for init and shuffles (default 0): same seed, same weights")
    p.add_argument("--candidates", type=int, metavar="N", help="train N seeds (--seed, --seed+1, ...) side by side "
                   "and keep the one the closed-loop figure ranks best (default: 3 for inverse, else 1)")
    p.add_argument("--tune", type=int, metavar="N", help="inverse: N iterations of closed-loop tuning through learned "
                   "servos after the fit (default 40, 0: none; host/train/TRAIN.md)")
    p.add_argument("--out", metavar="DIR", help="model directory (default models/TASK)")
    p.add_argument("--force", action="store_true", help="replace an existing model directory")
    p.add_argument("--resume", metavar="DIR", help="continue training the model in DIR (same settings, more epochs; "
                   "on --device, more or other sessions)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(run=run)


def widths(text):
    try:
        values = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(text)
    return values


def check_arguments(args):
    """The numbers, before any session is read or a minute spent training a model the device cannot run."""
    if args.lr is not None and not 0 < args.lr <= MAX_LR:
        raise UserError(f"--lr {args.lr:g}: give a learning rate > 0 and at most {MAX_LR:g} (default 0.003)")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {args.seed}: give a whole number from 0 to {MAX_SEED}")
    for flag in ("epochs", "batch", "patience"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag} {value}: give a whole number >= 1")
    if args.candidates is not None:
        from host.train.candidates import check

        check(args.candidates)
    if args.tune is not None and not 0 <= args.tune <= MAX_TUNE:
        raise UserError(f"--tune {args.tune}: give a whole number of iterations from 0 (none) to {MAX_TUNE}")
    if args.tune and (args.task or "inverse") != "inverse":
        raise UserError(f"--tune: only the inverse task is tuned in closed loop (--task {args.task}: drop --tune)")
    if args.ahead is not None and args.ahead < 0:
        raise UserError(f"--ahead {args.ahead}: give ticks >= 0")
    if args.hidden is not None:
        if len(args.hidden) > mlp.MAX_LAYERS - 1 or max(args.hidden) > mlp.MAX_WIDTH:
            raise UserError(f"--hidden {','.join(map(str, args.hidden))}: the device runs at most "
                            f"{mlp.MAX_LAYERS - 1} hidden layers of at most {mlp.MAX_WIDTH} each")


def writable(out):
    """A one-line error now, not a traceback after the training, when the model directory cannot be made there."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot make {out.parent} ({e.strerror or e}): give a directory you can write to") from None
    try:  # a real probe: access() says yes to root on a read-only or virtual file system
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e}): give another --out") from None


def _unexportable(e):
    """True for the ValueError host.export.quantize raises on a model the device cannot run (NaN
    weights after a diverged training, too many weights): the user's settings, not a bug."""
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.join("export", "quantize.py") in tb.tb_frame.f_code.co_filename


def run(args):
    check_arguments(args)
    try:
        metrics = _train(args)
    except ValueError as e:
        if not _unexportable(e):
            raise
        why = str(e)
        hint = "lower --lr (the training diverged)" if "NaN or infinite" in why else "give smaller --hidden layers"
        raise UserError(f"the trained model cannot go onto the device ({why}): {hint}") from None
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print(summary(metrics))
    return 0


def _train(args):
    if args.resume:
        given = [flag for flag in SETTINGS + ("candidates",) if getattr(args, flag) is not None] + (["qat"] if args.qat else [])
        if given:
            raise UserError(f"--resume keeps the model's settings: drop --{', --'.join(given)} "
                            "(only --epochs, --device, --quiet, --json and the sessions (--unit) may change)")
        if args.out is not None:
            raise UserError(f"--resume writes the model back into {args.resume}: drop --out")
        from host.train.pipeline import resume  # PyTorch loads only to train
        metrics = resume(args.resume, epochs=args.epochs, sessions=args.sessions or None, progress=not args.quiet,
                         device=args.device, unit=args.unit)
    else:
        task = args.task or "inverse"
        out = Path(args.out) if args.out else Path("models") / task
        if out.exists() and not args.force:
            raise UserError(f"{out} exists: give another --out, --force to replace it, or --resume {out}")
        writable(out)
        from host.train.candidates import CANDIDATES, train

        candidates = args.candidates or (CANDIDATES if task == "inverse" else 1)  # only inverse has the figure
        metrics = train(task, args.sessions, out=out, progress=not args.quiet, ahead=args.ahead, hidden=args.hidden,
                        candidates=candidates, say=lambda line: print(line, file=sys.stderr),
                        act=args.act, optim=args.optim, lr=args.lr, epochs=args.epochs, batch=args.batch,
                        patience=args.patience, qat=args.qat or None, device=args.device, seed=args.seed,
                        tune=args.tune, unit=args.unit)
    return metrics


def summary(m):
    """A few lines: where it went, how well it fits (float and int8) against the baselines."""
    lines = [f"model {m['path']} ({m['task']}, {m['sizes']['blob_bytes']} byte blob, id {m['model_id']}): "
             f"{m['rows']['train']} training rows, {m['rows']['val']} validation ({m['split']})",
             f"epochs {m['epochs_run']} (best {m['best_epoch']}{', stopped early' if m['stopped_early'] else ''}) "
             f"in {m['timings']['train_s']:.1f} s; val loss {m['val_loss']:.5f}"]
    from host.train.dataset import output_label

    for o in m["outputs"]:
        base = m["baseline_rmse"]
        joint, quantity, unit = output_label(o)
        u = f" {unit}" if unit else ""
        name = f"{o} ({joint} {quantity})" if quantity else o
        lines.append(f"  {name}: val RMSE {m['val_rmse'][o]:.4g}{u} (int8 {m['int8']['val_rmse'][o]:.4g}{u}; "
                     f"baselines: linear {base['linear'][o]:.4g}{u}, mean {base['mean'][o]:.4g}{u})")
    if m.get("candidates"):
        c = m["candidates"]
        lines.append(f"kept seed {c['kept_seed']} of {len(c['seeds'])} candidates, predicted tracking "
                     + ", ".join("-" if v is None else f"{v:.2f}°" for v in c["predicted_deg"])
                     + f" (closed-loop figure; {c['seconds']:.1f} s in all)")
    dropped = {k: v for k, v in m["rows"]["dropped"].items() if v}
    if dropped:
        lines.append("rows left out: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()))
    return "\n".join(lines)
