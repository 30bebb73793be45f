"""`host demo`: the README's main command -- flash, collect, train, deploy, evaluate, report (host/demo.py)."""

import json
import sys

from host.demo import COLLECT_S, EPOCHS, Demo
from host.evaluate import SECONDS, TRAJECTORIES


def add_parser(sub):
    p = sub.add_parser("demo", help="the whole loop on a virtual Gen0 (or --port for a real robot), with a report")
    p.add_argument("--port", help="use the robot on this port instead of starting a virtual Gen0")
    p.add_argument("--plant", help="plant parameter file for the virtual Gen0 (default hardware/plant_gen0.json)")
    p.add_argument("--seed", type=int, default=0, help="virtual Gen0 unit to draw (unit-to-unit variation)")
    p.add_argument("--collect", type=float, default=COLLECT_S, metavar="S",
                   help=f"seconds of excitation to learn from (default {COLLECT_S:g})")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs at most (default {EPOCHS})")
    p.add_argument("--seconds", type=float, default=SECONDS, help=f"length of each held-out trajectory (default {SECONDS:g})")
    p.add_argument("--trajectories", default=",".join(TRAJECTORIES), metavar="NAME,...",
                   help=f"held-out trajectories to evaluate on (default {','.join(TRAJECTORIES)})")
    p.add_argument("--no-flash", action="store_true", help="--port: the robot already runs this firmware")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/demo-DATE-TIME)")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout (progress goes to stderr)")
    p.set_defaults(run=run)


def run(args):
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda msg: print(msg, flush=True))
    if args.no_flash and not args.port:
        say("note: --no-flash is for --port; a fresh virtual Gen0 is always flashed")
    demo = Demo(port=args.port, plant=args.plant, seed=args.seed, out=args.out, collect_s=args.collect,
                epochs=args.epochs, seconds=args.seconds, trajectories=[n for n in args.trajectories.split(",") if n],
                flash=not (args.no_flash and args.port), say=say)
    facts = demo.run()
    if args.json:
        print(json.dumps(facts, default=str))
    else:
        say(f"\ndone in {facts['seconds']:.0f} s: report {facts['report']}")
    return 0
