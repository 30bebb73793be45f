"""The `host` command line: a thin dispatcher over host/commands/*.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`.
Errors a user can fix are raised as `UserError` and printed as one line.
"""

import argparse
import importlib
import sys

from host import __version__
from host.errors import UserError

COMMANDS = ["ports", "flash", "monitor", "sim", "demo", "collect", "replay", "sessions", "info", "export", "deploy", "train", "models", "eval", "bench"]


def build_parser():
    parser = argparse.ArgumentParser(prog="host", description="Polyniod host tools for the Gen0 robot.")
    parser.add_argument("--version", action="version", version=f"polyniod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"host.commands.{name}").add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
