"""`host eval`: the robot follows held-out trajectories with the naive, linear and learned controllers."""

import json
import sys

from host.commands import add_held_out, add_sessions_dir, held_out
from host.commands.ports import add_port, board_port
from host.errors import UserError
from host.evaluate import (CONTROLLERS, calibrate, check_lin, evaluate, plot, public, table,
                           trained_sessions)
from host.sessions import find_session, load
from host.signals import with_stop_signals


def add_parser(sub):
    p = sub.add_parser("eval", help="track held-out trajectories with each controller; RMSE, max error, lag")
    add_port(p)
    add_held_out(p, "reference trajectories")
    p.add_argument("--controllers", default=",".join(CONTROLLERS), metavar="NAME,...",
                   help="which controllers")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each trajectory with each controller N times: the RMSE's run-to-run spread")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibrate", nargs="+", metavar="SESSION",
                     help="sessions to fit the linear calibration on (default: the deployed model's training sessions)")
    cal.add_argument("--linear", metavar="A0,B0,A1,B1", help="the linear calibration itself: pulse_j = a_j + b_j * deg")
    p.add_argument("--models", default="models", metavar="DIR", help="where to look up the deployed model")
    add_sessions_dir(p, role=" for the runs")
    p.add_argument("--plot", metavar="FILE.png", help="write target vs measured per trajectory and controller")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    p.set_defaults(run=run)


def run(args):
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    controllers = [c for c in args.controllers.split(",") if c]
    names = held_out(args, controllers)  # names and numbers before any port or session is opened
    if not 1 <= args.repeat <= 100:
        raise UserError(f"--repeat {args.repeat}: give 1 to 100 passes")
    lin, cal = linear(args, controllers)
    port = board_port(args.port)
    if cal:
        say("linear calibration from " + ", ".join(cal["sessions"]) + ": " + ", ".join(
            f"{j} {a:.0f} us + {b:.2f} us/deg" for j, a, b in zip(cal["joints"], cal["lin"][::2], cal["lin"][1::2])))
    result = with_stop_signals(lambda stop: evaluate(port, lin, names, args.seconds, controllers, args.out,
                                                     say=say, stop=stop, repeat=args.repeat))
    if args.plot:
        plot(result, args.plot)
    out = public(result)
    out["calibration"], out["plot"] = cal, args.plot
    if args.json:
        print(json.dumps(out))
        return 0
    for note in result["notes"]:
        print(note)
    for line in table(result):
        print(line)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def linear(args, controllers):
    """(lin, calibration or None): given, fitted on --calibrate sessions, or on the deployed model's sessions."""
    if "linear" not in controllers:
        return [], None
    if args.linear:
        try:
            lin = [float(v) for v in args.linear.split(",")]
        except ValueError:
            raise UserError(f"--linear {args.linear}: give numbers a0,b0,a1,b1 (pulse = a + b * deg per joint)") from None
        check_lin(lin)  # numbers in pairs here; their count against the board's joints once it says hello, before any run
        return lin, None
    if args.calibrate:
        sessions = [load(find_session(s, args.out)) for s in args.calibrate]
    else:
        args.port = board_port(args.port)  # the board says which model it runs: found once, for the runs too
        sessions = trained_sessions(args.port, args.models)
    return (cal := calibrate(sessions))["lin"], cal
