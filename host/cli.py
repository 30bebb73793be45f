"""The `host` command line: a thin dispatcher over host/commands/*.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, and imports what only its
run needs inside run: building the parser (`host --help`, `host ports`) loads no PyTorch or matplotlib.
Errors a user can fix are raised as `UserError` and printed as one line; Ctrl-C and a reader that
closed the pipe end a command at any moment without a traceback.
"""

import argparse
import importlib
import os
import signal
import sys
import threading

from host import __version__
from host.errors import UserError

COMMANDS = ["ports", "flash", "check", "monitor", "sim", "demo", "collect", "replay", "sessions", "info", "export", "deploy", "train", "models", "eval", "learn", "bench"]
INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C stopped
BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head -1` reports for yes
LARGE_PACKAGES = {"torch": "PyTorch", "matplotlib": "matplotlib"}  # only the commands that train or plot load them


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default at the end of its help, "(default: 0.5)", or in its closing parenthesis. None shows
    none (the help says what leaving the option out does), nor does a flag's bool, an empty list, or help that
    speaks of its default already."""

    def _get_help_string(self, action):
        text, default = action.help or "", action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default == [] or "default" in text):
            return text
        shown = (f"{default:g}" if isinstance(default, float) else str(default)).replace("%", "%%")
        return f"{text[:-1]}; default: {shown})" if text.endswith(")") else f"{text} (default: {shown})"


class CommandParser(argparse.ArgumentParser):
    """A parser that shows defaults (HelpFormatter) and takes some late: `late_defaults(load)` has load() ->
    {dest: value} applied only when this parser parses or shows its help, so that a default kept in a
    heavy module (host.demo loads PyTorch) costs nothing to the other commands."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)
        self._late = []

    def late_defaults(self, load):
        self._late.append(load)

    def _apply_late(self):
        while self._late:
            self.set_defaults(**self._late.pop()())

    def parse_known_args(self, args=None, namespace=None):
        self._apply_late()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._apply_late()
        return super().format_help()


class Commands(argparse._SubParsersAction):
    """The commands: each one's --help opens with its one-line help as a sentence unless it has a description."""

    def add_parser(self, name, **kwargs):
        line = kwargs.get("help")
        if line and not kwargs.get("description"):
            kwargs["description"] = line[0].upper() + line[1:] + "."
        return super().add_parser(name, **kwargs)


def build_parser():
    parser = CommandParser(prog="host", description="Polyniod host tools for the Gen0 robot.")
    parser.add_argument("--version", action="version", version=f"polyniod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=Commands)
    for name in COMMANDS:
        importlib.import_module(f"host.commands.{name}").add_parser(sub)
    return parser


def main(argv=None):
    """Run one command. Ctrl-C at any moment (parsing and imports included) ends as one line, exit 130;
    a reader that went away (`host sessions | head -1`) ends it quietly, exit 141."""
    ctrl_c = []
    previous = _on_ctrl_c(ctrl_c)
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach a pipe (`host flash | tee log`) as they are printed
        sys.stdout.reconfigure(line_buffering=True)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        _stdout_to_devnull()
        return BROKEN_PIPE
    except Exception:
        if ctrl_c:  # what the interrupt broke on its way out: numpy's import turns it into an ImportError
            return _interrupted()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _on_ctrl_c(seen):
    """Ctrl-C raises KeyboardInterrupt as ever and is noted in `seen`; returns the handler it replaced, or None
    where there is none to replace (SIGINT ignored, as for a background job, or main not in the main thread)."""
    def interrupt(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return None
    return signal.signal(signal.SIGINT, interrupt)


def _interrupted():
    print("interrupted", file=sys.stderr)
    return INTERRUPTED


def _main(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # a command's --help may load what its defaults live in
        if not getattr(args, "run", None):
            parser.print_help()
            return 2
        code = args.run(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        if e.name not in LARGE_PACKAGES:
            raise
        print(f"error: this command needs {LARGE_PACKAGES[e.name]}, which is not installed here: pip install {e.name}",
              file=sys.stderr)
        return 1
    sys.stdout.flush()  # a closed pipe shows here, inside main, not in the interpreter's last flush
    return code


def _stdout_to_devnull():
    """What stdout still buffers goes nowhere, so the interpreter's last flush does not fail on the closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (a test's StringIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
