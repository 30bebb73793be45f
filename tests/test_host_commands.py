"""`host ports`, `host flash`, `host monitor` against the virtual Gen0 and the real mpremote."""

import json
import os
import subprocess
import sys

import pytest

from host.firmware_files import firmware_files, load_robot
from host.link.client import Link
from tests.helpers import junk_device, mpremote

pytestmark = pytest.mark.slow  # flash, monitor and bench against a virtual Gen0 (5-27 s each)

HOST = [sys.executable, "-m", "host"]


def host(*args, timeout=120):
    return subprocess.run(HOST + list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(proc):
    assert proc.returncode != 0, proc.stdout
    lines = [l for l in proc.stderr.strip().splitlines() if l]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_ports_lists_running_virtual_gen0(sim):
    proc = host("ports", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    ours = [r for r in rows if r["kind"] == "virtual Gen0"]
    assert any(os.path.realpath(r["port"]) == os.path.realpath(sim.port) for r in ours), rows


def test_flash_installs_firmware_and_it_streams(sim):
    proc = host("flash", "--port", sim.port, timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "firmware v" in proc.stdout
    listing = mpremote(sim.port, "fs", "ls")
    for name in ("boot.py", "main.py", "protocol.mpy", "robot.json"):  # .mpy by default (host/flash/mpy.py)
        assert name in listing
    assert ".flash_new" not in listing  # the staging folder is gone after the rename
    # mpremote left the board in the REPL: monitor restarts the firmware by a soft reset
    proc = host("monitor", "--port", sim.port, "--duration", "3", "--interval", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = [json.loads(l) for l in proc.stdout.splitlines()]
    rate = stats[-1]["frames_per_s"]
    configured = load_robot()["loop"]["rate_hz"]
    assert 0.75 * configured < rate < 1.3 * configured, stats  # hardware/gen0.json's rate (+ acks/logs)
    assert stats[-1]["crc_errors"] == 0
    assert stats[-1]["drops"] == 0
    latest = stats[-1]["latest"]
    assert {"shoulder_deg", "elbow_deg", "ax", "gz"} <= set(latest)


def test_flash_mpy_compiles_modules(sim):
    proc = host("flash", "--port", sim.port, "--mpy", timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    listing = mpremote(sim.port, "fs", "ls")
    assert "protocol.mpy" in listing and "protocol.py" not in listing
    assert "main.py" in listing and "boot.py" in listing


def test_flash_sends_the_files_compressed_and_the_board_holds_them_byte_for_byte(sim):
    proc = host("flash", "--port", sim.port, "--py", timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "KiB, compressed) to" in proc.stdout  # the virtual Gen0's MicroPython has `deflate`, as an ESP32's
    files = firmware_files()
    assert len(files) > 10 and {name: (sim.flash_dir / name).read_bytes() for _, name in files} == \
        {name: src.read_bytes() for src, name in files}


def test_flash_checks_every_chunk_and_an_interrupted_flash_keeps_the_old_firmware(sim):
    """Files go in base64 execs, each chunk checked against its CRC on the board; a Ctrl-C mid-copy leaves
    the staging folder, never a mix: the board boots the firmware it had, and the next flash completes."""
    import binascii
    import signal
    import time
    import zlib

    from host.flash.firmware import chunk_script

    proc = host("flash", "--port", sim.port, timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    installed = next(line for line in proc.stdout.splitlines() if line.startswith("installed "))  # "installed N files ..."
    before = {p.name: p.read_bytes() for p in sim.flash_dir.iterdir() if p.is_file()}

    data, other = bytes(range(256)) * 3, bytes(range(255, -1, -1)) * 3
    script = chunk_script("x.bin", data, 0, "x.bin", len(data)).replace(
        binascii.b2a_base64(data, newline=False).decode(), binascii.b2a_base64(other, newline=False).decode())
    out = subprocess.run([sys.executable, "-m", "mpremote", "connect", sim.port, "exec", script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "x.bin: damaged on the way" in out.stdout + out.stderr
    assert not (sim.flash_dir / "x.bin").exists()
    # compressed (the board has `deflate`): another valid stream fails the CRC, a broken one too
    packed = chunk_script("x.bin", data, 0, "x.bin", len(data), packed=True)
    b64 = packed.split("a2b_base64('")[1].split("'")[0]
    z = zlib.compressobj(9, zlib.DEFLATED, 10)
    truncated = binascii.b2a_base64(binascii.a2b_base64(b64)[:-6], newline=False).decode()
    for bad in (binascii.b2a_base64(z.compress(other) + z.flush(), newline=False).decode(), truncated):
        out = subprocess.run([sys.executable, "-m", "mpremote", "connect", sim.port, "exec", packed.replace(b64, bad)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "x.bin: damaged on the way" in out.stdout + out.stderr
        assert not (sim.flash_dir / "x.bin").exists()

    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's pipe: progress comes line by line
    flash = subprocess.Popen(HOST + ["flash", "--port", sim.port, "--py"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, stdin=subprocess.DEVNULL, env=buffered)
    said = []
    for line in flash.stdout:  # Ctrl-C once a few files are in the staging folder
        said.append(line)
        if "[3/" in line:
            flash.send_signal(signal.SIGINT)
            break
    rest, _ = flash.communicate(timeout=60)
    assert flash.returncode != 0 and any("[3/" in line for line in said), "".join(said) + rest
    assert {p.name: p.read_bytes() for p in sim.flash_dir.iterdir() if p.is_file()} == before  # nothing replaced
    time.sleep(0.5)
    with Link(sim.port) as link:
        assert link.connect(timeout=5.0).fw  # the firmware it had boots
    proc = host("flash", "--port", sim.port, timeout=180)
    assert proc.returncode == 0 and installed.split(" in ")[0] in proc.stdout, proc.stderr + proc.stdout
    assert not (sim.flash_dir / ".flash_new").exists()


def test_monitor_missing_port():
    line = one_line_error(host("monitor", "--port", "/dev/does-not-exist"))
    assert "host ports" in line


def test_monitor_busy_port(gen0):
    with Link(gen0.port):
        line = one_line_error(host("monitor", "--port", gen0.port, "--duration", "1"))
    assert "busy" in line


def test_monitor_board_without_firmware(sim):
    line = one_line_error(host("monitor", "--port", sim.port, "--duration", "1", timeout=60))
    assert "MicroPython but not the Polyniod firmware" in line and "host flash" in line


def test_flash_rejects_a_device_that_is_not_micropython():
    with junk_device() as (_, port):
        line = one_line_error(host("flash", "--port", port, timeout=120))
        assert "no MicroPython REPL answered" in line and "--micropython" in line
        line = one_line_error(host("monitor", "--port", port, "--duration", "1", timeout=60))
        assert "neither our firmware's frames nor MicroPython" in line or "no answer" in line


def test_monitor_rejects_older_firmware(sim, tmp_path):
    """A board whose firmware is older than the host's gets told to run host flash."""
    from host.firmware_files import install_into

    install_into(sim.flash_dir)
    (sim.flash_dir / "version.py").write_text('FIRMWARE_VERSION = "0.0.1"\n')
    mpremote(sim.port, "soft-reset")
    line = one_line_error(host("monitor", "--port", sim.port, "--duration", "1", timeout=60))
    assert "older" in line and "host flash" in line


def test_esptool_refuses_virtual_board(sim, tmp_path):
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\0" * 16)
    line = one_line_error(host("flash", "--micropython", str(image), "--port", sim.port))
    assert "virtual Gen0" in line


STAGES = ["sense", "decide", "actuate", "report", "listen", "tick"]


def test_monitor_shows_where_the_ticks_go(gen0):
    """Per-stage mean/max us from the firmware's `stages`, asked every few seconds: in --json and on screen."""
    proc = host("monitor", "--port", gen0.port, "--duration", "5", "--interval", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["stages"] is None, lines[0]  # the first `stages` only starts the figures
    figures = lines[-1]["stages"]
    assert figures is not None, lines
    st = figures["stages"]
    assert list(st) == STAGES and figures["ticks"] > 0 and figures["tx_waits"] >= 0, figures
    for name, s in st.items():
        assert 0 <= s["mean_us"] <= s["max_us"] <= st["tick"]["max_us"], (name, st)
    assert st["sense"]["mean_us"] > 0 and st["report"]["mean_us"] > 0 and st["tick"]["mean_us"] > 0, st
    tick = st["tick"]["mean_us"]
    assert abs(sum(st[n]["mean_us"] for n in STAGES[:-1]) - tick) <= 3 + 0.01 * tick, st

    proc = host("monitor", "--port", gen0.port, "--duration", "5", "--interval", "1")
    assert proc.returncode == 0, proc.stderr
    shown = [line for line in proc.stdout.splitlines() if line.startswith("stages mean/max us: sense ")]
    assert shown and shown[-1].endswith("ticks, ESP32 us, virtual Gen0)"), proc.stdout
    assert "frames/s" in proc.stdout and "shoulder" in proc.stdout


def test_monitor_and_bench_with_a_firmware_without_stages(sim):
    """An older firmware answers `stages` with E_UNKNOWN: no stage figures, no error."""
    from host.firmware_files import install_into

    install_into(sim.flash_dir)
    commands = sim.flash_dir / "commands.py"
    text = commands.read_text()
    assert '"stages": self.stages,' in text
    commands.write_text(text.replace('"stages": self.stages,', ""))
    mpremote(sim.port, "soft-reset")
    proc = host("monitor", "--port", sim.port, "--duration", "3", "--interval", "1", "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) >= 2 and all(line["stages"] is None for line in lines), lines
    assert lines[-1]["frames_per_s"] > 0, lines
    proc = host("monitor", "--port", sim.port, "--duration", "3", "--interval", "1")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "frames/s" in proc.stdout and "stages" not in proc.stdout, proc.stdout
    proc = host("bench", "--port", sim.port, "--seconds", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    loop = json.loads(proc.stdout)["loop"]
    assert loop["stages"] is None and "no `stages`" in loop["stages_note"] and loop["frames"] > 1, loop
    with Link(sim.port) as link:
        link.connect()
        with pytest.raises(Exception, match="E_UNKNOWN"):
            link.request("stages")


def test_monitor_stage_poller_asks_every_few_seconds_and_stops_at_e_unknown():
    from polyniod_firmware import protocol as P

    from host.watch import StagePoller

    class FakeLink:
        def __init__(self, answer):
            self.answer, self.sent, self.acks = answer, [], {}

        def send(self, name):
            self.sent.append(name)
            self.acks[len(self.sent)] = self.answer(len(self.sent))
            return len(self.sent)

        def take_ack(self, seq):
            return self.acks.pop(seq, None)

    def ack(n):
        return P.E_OK, json.dumps({"stages": STAGES, "ticks": n, "mean_us": [1] * 5 + [5], "max_us": [2] * 5 + [9], "tx_waits": 0}).encode()

    link = FakeLink(ack)
    poller = StagePoller(link, every=3.0)
    t0 = poller.next_at
    seen = [poller.poll(t0 + dt) for dt in (0, 0.1, 1, 2.9, 3.0, 3.1, 5, 6.0, 6.1)]
    assert link.sent == ["stages"] * 3, link.sent  # at 0, 3 and 6 s: not at every poll
    assert seen[:5] == [None] * 5  # the first answer (since whoever asked last) is dropped
    assert seen[5]["ticks"] == 2 and seen[5]["stages"]["tick"] == {"mean_us": 5, "max_us": 9} and seen[8]["ticks"] == 3

    link = FakeLink(lambda n: (P.E_UNKNOWN, b"no command 'stages'"))
    poller = StagePoller(link, every=3.0)
    assert [poller.poll(poller.next_at + dt) for dt in range(0, 20, 1)] == [None] * 20
    assert link.sent == ["stages"] and not poller.known



def test_monitor_refuses_a_duration_or_interval_that_never_ends_before_connecting(gen0, capsys):
    """--duration 0|nan and --interval inf once watched forever; --interval 0|-1 were taken silently."""
    from host import cli

    for args in (["--duration", "0"], ["--interval", "inf"]):  # these hung: a process with a deadline
        line = one_line_error(host("monitor", "--port", gen0.port, *args, timeout=30))
        assert line.startswith(f"error: {args[0]} {args[1]}: give seconds > 0"), line
    for args in (["--duration", "nan"], ["--duration", "-1"], ["--interval", "0", "--duration", "0.5"],
                 ["--interval", "-1", "--duration", "0.5"], ["--interval", "1e+300", "--duration", "0.5"],
                 ["--baud", "0", "--duration", "0.5"]):
        assert cli.main(["monitor", "--port", gen0.port, *args]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {args[0]} {args[1]}: give "), lines
    proc = host("monitor", "--port", gen0.port, "--duration", "0.6", "--interval", "0.2", "--json", timeout=30)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) >= 2, proc.stderr  # sane figures: a sane run
