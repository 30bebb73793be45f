"""How `host` starts and ends: building the parser loads no PyTorch or matplotlib; the commands that do
not train run where PyTorch is not installed at all; --port may be left out where exactly one board is
found; Ctrl-C ends as one line, and a reader that closed the pipe ends a command quietly."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from host import cli
from tests.test_sessions import reads, record

# `import torch` raises ImportError where sys.modules holds None for it: PyTorch as if not installed
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from host.cli import main; sys.exit(main(sys.argv[1:]))"


def host_without_torch(*args, timeout=60):
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def only_here(tmp_path, monkeypatch):
    """Virtual Gen0s registered in a folder of this test's own (host/sim/registry.py), not other runs' ones."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()


def test_building_the_parser_loads_no_torch_or_matplotlib():
    code = ("import sys, host.cli; host.cli.build_parser(); "
            "print(' '.join(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"building the parser loaded {proc.stdout.strip()}"


@pytest.mark.slow
def test_board_commands_run_without_torch_and_find_the_one_board(only_here, make_sim, tmp_path):
    gen0 = make_sim(preload=True)
    proc = host_without_torch("ports", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["kind"] for r in json.loads(proc.stdout)].count("virtual Gen0") == 1

    proc = host_without_torch("monitor", "--duration", "1.5", "--interval", "0.5", "--json")  # no --port: the one board
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == f"using {gen0.port} (virtual Gen0)", proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["frames_per_s"] > 0

    out = tmp_path / "sessions"
    proc = host_without_torch("collect", "--port", gen0.port, "--duration", "1", "--name", "s", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["telemetry_frames"] > 0
    for args in (["sessions", "--dir", str(out)], ["info", "s", "--dir", str(out)]):
        proc = host_without_torch(*args)
        assert proc.returncode == 0 and "s" in proc.stdout, proc.stderr


def test_no_board_is_one_line_saying_to_pass_port(only_here):
    proc = host_without_torch("monitor", "--duration", "1")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no board found"), proc.stderr
    assert "--port" in proc.stderr


def test_several_boards_are_one_line_naming_them(only_here, make_sim):
    ports = [make_sim().port, make_sim().port]
    proc = host_without_torch("monitor", "--duration", "1")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: 2 boards found") and "--port" in proc.stderr
    assert all(port in proc.stderr for port in ports), proc.stderr


def test_training_without_torch_is_one_line_saying_what_to_install(tmp_path):
    proc = host_without_torch("train", "--task", "sin", "--out", str(tmp_path / "model"), "--quiet")
    assert proc.returncode == 1
    assert proc.stderr == "error: this command needs PyTorch, which is not installed here: pip install torch\n", proc.stderr


@pytest.mark.sim  # `host sim` in a child process
def test_sim_runs_without_torch_until_sigterm(only_here, tmp_path):
    link = tmp_path / "gen0"
    proc = subprocess.Popen([sys.executable, "-c", WITHOUT_TORCH, "sim", "--link", str(link)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("virtual Gen0 on /dev/") and str(link) in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "{" not in err.splitlines()[-1], err  # the counters in words, not a dict


def test_ctrl_c_while_starting_is_one_line(monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)  # as if Ctrl-C came while the command modules load
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["ports"]) == 130
    assert err.getvalue() == "interrupted\n"


def test_ctrl_c_that_an_import_turned_into_another_error_is_one_line(monkeypatch):
    def numpy_like_import():
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, while a C extension loads
        except KeyboardInterrupt:
            raise ImportError("PyCapsule_Import could not import module \"datetime\"") from None

    monkeypatch.setattr(cli, "build_parser", numpy_like_import)
    before = signal.getsignal(signal.SIGINT)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["ports"]) == 130
    assert err.getvalue() == "interrupted\n"
    assert signal.getsignal(signal.SIGINT) is before  # main leaves the process's Ctrl-C as it found it


@pytest.mark.parametrize("copies, read", [(3, 0), (1500, 100)], ids=["closed-at-once", "closed-after-a-line"])
def test_a_closed_pipe_ends_quietly(tmp_path, copies, read):
    """`host sessions | head -1`: the reader goes away while host writes (at once, or once more than a pipe
    holds is listed and it read a little)."""
    record(tmp_path, reads(5), name="s0")
    for i in range(1, copies):
        shutil.copy(tmp_path / "s0.session", tmp_path / f"s{i}.session")
    proc = subprocess.Popen([sys.executable, "-m", "host", "sessions", "--dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.read(proc.stdout.fileno(), read) if read else None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == cli.BROKEN_PIPE, err
    assert err == "", err
