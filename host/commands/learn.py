"""`host learn`: self-improvement rounds on a connected robot (on-policy data, retrain, redeploy, keep the better)."""

import json
import sys
from pathlib import Path

from host.commands import add_held_out, held_out, seconds
from host.commands.ports import add_port, board_port
from host.errors import UserError
from host.sessions import find_session
from host.signals import with_stop_signals

MAX_SEED = 9999  # the fresh trajectories' seeds stay apart from every program's and eval's


def add_parser(sub):
    p = sub.add_parser("learn", help="rounds of: track fresh trajectories with the learned model, retrain on "
                       "that too, redeploy, evaluate; the better model is kept")
    add_port(p)
    p.add_argument("--rounds", type=int, default=3, help="self-improvement rounds")
    p.add_argument("--model", metavar="DIR", help="the model to start from (its metrics.json names its training "
                   "and validation sessions); default: train one on SESSION... --val SESSION")
    p.add_argument("sessions", nargs="*", metavar="SESSION", help="training sessions (without --model)")
    p.add_argument("--val", nargs="+", metavar="SESSION", help="validation session(s), the same every round "
                   "(without --model)")
    p.add_argument("--collect", type=float, default=20.0, metavar="SECONDS", help="on-policy tracking per round")
    p.add_argument("--epochs", type=int, default=60, help="epochs per training (patience 15)")
    add_held_out(p, "held-out trajectories each round is scored on")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh trajectories and of training")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/learn-DATE-TIME)")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    p.set_defaults(run=run)


def run(args):
    from host.demo import run_dir  # numpy, the recorder: loaded when the command runs
    from host.learn import learn, table_lines

    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    names = held_out(args, ["model"])
    seconds("--collect", args.collect, 4.999, 300)
    if not 1 <= args.rounds <= 20:
        raise UserError(f"--rounds {args.rounds}: give 1 to 20 rounds")
    if args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give a whole number >= 1")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {args.seed}: give a whole number from 0 to {MAX_SEED}")
    train, val = _sessions(args)
    port = board_port(args.port)
    out = run_dir(args.out, "learn")
    result = with_stop_signals(lambda stop: learn(port, train, val, args.rounds, out, model=args.model,
                                                  collect_s=args.collect, epochs=args.epochs, names=names,
                                                  seconds=args.seconds, seed=args.seed, say=say, stop=stop))
    if args.json:
        print(json.dumps(result))
        return 0
    for line in table_lines(result):
        print(line)
    print(f"plot: {result['plot']}; every figure: {out / 'learn.json'}")
    return 0


def _sessions(args):
    """(training session paths, validation session paths): from --model's metrics, or given."""
    if args.model:
        if args.sessions or args.val:
            raise UserError("give --model (its sessions are used) or SESSION... --val SESSION, not both")
        metrics = Path(args.model) / "metrics.json"
        try:
            infos = json.loads(metrics.read_text())["sessions"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"--model {args.model}: no readable metrics.json listing its sessions (a `host train` "
                            "model directory)") from None
        train = [i["path"] for i in infos if i.get("role") == "train"]
        val = [i["path"] for i in infos if i.get("role") == "val"]
        if not train or not val:
            raise UserError(f"--model {args.model} validated on its training sessions' ends: give SESSION... "
                            "--val SESSION instead, so the rounds keep one validation session")
        return train, val
    if not args.sessions or not args.val:
        raise UserError("give the sessions to learn from: --model DIR, or SESSION... --val SESSION")
    return ([str(find_session(s)) for s in args.sessions], [str(find_session(s)) for s in args.val])
