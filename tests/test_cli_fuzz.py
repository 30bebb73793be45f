"""Every numeric option of every `host` command, given 0, -1, nan, inf, 1e300 and a word: a one-line
`error:` (exit 1, or argparse's usage error, exit 2) or a sane run -- never a traceback, never a hang.

nan and inf are never a time, rate or count: a refusal must name the option and value (so the check
came before the port or file that fails next); inf may also be a sane run (replay --speed inf).
The options are found in the argparse parsers (host/cli.py builds them), so a new option is fuzzed
without touching this file. Each command runs in this process, against targets that fail fast
once the arguments are through: a port that does not exist, a plant file that does not exist, a
model directory that exists (train). Only `replay` runs for real, over a session of a few frames.
"""

import argparse
import contextlib
import io
import signal
import traceback
from pathlib import Path

import pytest

from host.cli import COMMANDS, build_parser, main
from host.sessions import SessionWriter
from tests.test_sessions import reads

ROOT = Path(__file__).resolve().parent.parent
VALUES = ["0", "-1", "nan", "inf", "1e300", "word"]
TIMEOUT_S = 10  # per run; every one here takes well under a second once the VM and plant loaders are warm


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def numeric_options(parser):
    """The options that take a number (type int, float, or a parser of its own such as train's --hidden)."""
    return [a.option_strings[-1] for a in parser._actions
            if a.option_strings and a.type is not None and a.type is not str and a.nargs in (None, "?")]


@pytest.fixture(scope="module")
def where(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "model-exists").mkdir()
    with SessionWriter(base / "sessions", "tiny", {"port": "/dev/fuzz"}) as w:
        for t, data in reads(10):
            w.append_bytes(t, data)
    return base


def base_args(command, base):
    """What each command needs besides the option under test: targets that fail fast, or a tiny session."""
    no_port = str(base / "no-such-port")
    return {
        "monitor": ["--port", no_port],
        "sim": ["--plant", str(base / "no-such-plant.json")],
        "demo": ["--port", no_port],  # --out: a new directory per run (run_argv)
        "collect": ["--port", no_port, "--out", str(base / "sessions")],
        "replay": ["tiny", "--out", str(base / "sessions")],
        "deploy": [str(ROOT / "models" / "sin"), "--port", no_port],
        "train": ["--task", "sin", "--out", str(base / "model-exists"), "--quiet"],
        "eval": ["--port", no_port, "--out", str(base / "sessions")],
        "bench": ["--port", no_port],
        "learn": [str(base / "sessions" / "tiny.session"), "--val", str(base / "sessions" / "tiny.session"),
                  "--port", no_port, "--out", str(base / "learn")],
    }.get(command)


class Hung(Exception):
    pass


def run(argv):
    """main(argv) in this process: (exit code, stdout, stderr); code "traceback" or "hung" for those."""
    out, err = io.StringIO(), io.StringIO()

    def hang(*_):
        raise Hung()

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help, or a usage error
                code = e.code
    except Hung:
        return "hung", out.getvalue(), f"still running after {TIMEOUT_S} s"
    except Exception:  # noqa: BLE001 -- what the user would have seen
        return "traceback", out.getvalue(), traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def cases():
    for command, parser in subcommands().items():
        for option in numeric_options(parser):
            for value in VALUES:
                yield command, option, value


def test_every_command_with_a_numeric_option_has_fast_failing_targets(where):
    parsers = subcommands()
    assert set(parsers) == set(COMMANDS)
    fuzzed = {command for command, _, _ in cases()}
    assert fuzzed >= {"monitor", "sim", "demo", "collect", "replay", "deploy", "train", "eval", "bench", "learn"}
    missing = [c for c in fuzzed if base_args(c, where) is None]
    assert not missing, f"give {missing} targets that fail fast in base_args()"


def test_numeric_options_get_a_one_line_error_or_a_sane_run(where, monkeypatch):
    monkeypatch.chdir(where)  # whatever a command makes by default (runs/, sessions/, models/) stays here
    monkeypatch.setenv("POLYNIOD_SESSIONS", str(where / "sessions"))
    failures = []
    for n, (command, option, value) in enumerate(cases()):
        argv = [command, *base_args(command, where), option, value]
        if command == "demo":
            argv += ["--out", str(where / f"demo-{n}")]
        code, out, err = run(argv)
        lines = err.strip().splitlines()
        if code in ("hung", "traceback"):
            failures.append((argv, code, "\n".join(lines[-3:])))
            continue
        if code == 0:
            if "Traceback" in err:
                failures.append((argv, "exit 0 with a traceback", err))
            continue
        if code == 2:  # argparse's usage error: usage, then "host COMMAND: error: ..."
            ok = lines and ": error: argument " + option in lines[-1]
        else:
            ok = code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
            if value in ("nan", "inf"):  # no time, rate or size: refused for what it is, before any port or file
                ok = ok and f"{option} {value}" in lines[0]
        if not ok:
            failures.append((argv, f"exit {code}", err.strip()[-500:]))
    assert not failures, "\n".join(f"host {' '.join(a)}: {why}: {text}" for a, why, text in failures)
