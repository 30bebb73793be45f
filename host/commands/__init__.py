"""The `host` commands, one module each (host/cli.py lists them), and the argument checks they share.

Every check runs before a port is opened or a board touched, and fails as a one-line UserError that
says what to give instead."""

import math

from host.errors import UserError

MAX_BAUD = 20_000_000  # beyond any UART an ESP32 drives (5 Mbaud) with margin
DAY_S = 86400.0


def add_sessions_dir(p, option="--out", role=""):
    """The sessions directory option, one wording and one default everywhere."""
    p.add_argument(option, metavar="DIR", help=f"sessions directory{role} (default $POLYNIOD_SESSIONS or ./sessions)")


def seconds(option, value, low=0.0, high=DAY_S, what="seconds", hint=""):
    """A float option that is a time: finite, low < value <= high (low itself refused); None passes."""
    if value is None:
        return None
    if not (math.isfinite(value) and low < value <= high):
        raise UserError(f"{option} {value:g}: give {what} > {low:g} and at most {high:g}{hint}")
    return value


def baud(value, option="--baud"):
    """--baud: a positive rate (None: the robot description's)."""
    if value is not None and not 0 < value <= MAX_BAUD:
        raise UserError(f"{option} {value}: give a baud rate from 1 to {MAX_BAUD} "
                        f"(leave {option} out for the robot description's)")
    return value


def add_held_out(p, about="held-out trajectories"):
    """--trajectories and --seconds: which of eval's held-out trajectories, and how long each (eval, demo, learn)."""
    from host.evaluate import SECONDS, TRAJECTORIES

    p.add_argument("--trajectories", default=",".join(TRAJECTORIES), metavar="NAME,...", help=f"which {about}")
    p.add_argument("--seconds", type=float, default=SECONDS, help="length of each held-out trajectory")


def held_out(args, controllers=None):
    """The trajectory names of add_held_out's options, checked with the seconds (and controllers) before any port."""
    from host.evaluate import check_plan

    names = [n for n in args.trajectories.split(",") if n]
    check_plan(names, args.seconds, *([controllers] if controllers is not None else []))
    return names

