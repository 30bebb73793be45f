"""`host demo`: the README's main command -- flash, collect, train, deploy, evaluate, report (host/demo.py)."""

import json
import sys

from host.commands import add_held_out, held_out, seconds as check_seconds
from host.errors import UserError

MAX_COLLECT_S = 3600.0
MAX_SEED = (1 << 30) - 1 - 1000  # the validation steps draw from seed + 1000; a program's seed is 0..2**30-1


def add_parser(sub):
    p = sub.add_parser("demo", help="the whole loop on a virtual Gen0 (or --port for a real robot), with a report")
    p.add_argument("--port", help="use the robot on this port instead of starting a virtual Gen0")
    p.add_argument("--plant", help="plant parameter file for the virtual Gen0 (default hardware/plant_gen0.json)")
    p.add_argument("--seed", type=int, default=0, help="virtual Gen0 unit to draw (unit-to-unit variation)")
    p.add_argument("--collect", type=float, metavar="S", help="seconds of excitation to learn from")
    p.add_argument("--epochs", type=int, help="training epochs at most")
    p.late_defaults(_pipeline_defaults)
    add_held_out(p, "held-out trajectories to evaluate on")
    p.add_argument("--rounds", type=int, default=0, help="self-improvement rounds after the evaluation "
                   "(host learn: on-policy data, retrain, redeploy, keep the better; ~1.5 min each)")
    p.add_argument("--no-flash", action="store_true", help="--port: the robot already runs this firmware")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/demo-DATE-TIME)")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout (progress goes to stderr)")
    p.set_defaults(run=run)


def _pipeline_defaults():
    """host.demo's own defaults, read only when the demo is asked for: host.demo loads PyTorch."""
    from host.demo import COLLECT_S, EPOCHS

    return {"collect": COLLECT_S, "epochs": EPOCHS}


def check_arguments(args):
    """Everything the demo would otherwise find wrong only after minutes of collecting and training."""
    check_seconds("--collect", args.collect, low=0, high=MAX_COLLECT_S, what="seconds of excitation")
    if args.collect < 10:
        raise UserError(f"--collect {args.collect:g}: give at least 10 seconds of excitation")
    if args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a whole number >= 1")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {args.seed}: give a unit number from 0 to {MAX_SEED}")
    args.names = held_out(args)
    if not 0 <= args.rounds <= 20:
        raise UserError(f"--rounds {args.rounds}: give 0 to 20 self-improvement rounds")


def run(args):
    check_arguments(args)
    from host.demo import Demo  # PyTorch: only for the demo's run

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda msg: print(msg, flush=True))
    if args.no_flash and not args.port:
        say("note: --no-flash is for --port; a fresh virtual Gen0 is always flashed")
    demo = Demo(port=args.port, plant=args.plant, seed=args.seed, out=args.out, collect_s=args.collect,
                epochs=args.epochs, seconds=args.seconds, trajectories=args.names,
                flash=not (args.no_flash and args.port), rounds=args.rounds, say=say)
    facts = demo.run()
    if args.json:
        print(json.dumps(facts, default=str))
    else:
        say(f"\ndone in {facts['seconds']:.0f} s: report {facts['report']}")
    return 0
