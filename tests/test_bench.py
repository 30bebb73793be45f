"""`host bench` on the virtual Gen0 (real firmware, real MicroPython VM), and the firmware's `mtime`
on the bare VM: the figures must agree with what the board is known to do."""

import json
from pathlib import Path

import pytest

from host import cli
from host import watch
from host.deploy import deploy, read_blob
from host.link.client import Link
from polyniod_firmware import protocol as P
from tests.test_firmware_units import RATE, ROBOT, acks_of, command_lines, frames_of, run_on_vm

MODELS = Path(__file__).resolve().parent.parent / "models"
WIRE_BYTES_PER_FRAME = 48.08  # Gen0's telemetry frame with its FLAGs and escapes (FIRMWARE.md, frame budget)
STAGES = ["sense", "decide", "actuate", "report", "listen", "tick"]


def bench_json(capsys, *argv):
    assert cli.main(["bench", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_stages(figures, frames=None):
    """Per-stage times as the firmware keeps them: every tick's stages add up to the tick, so do their means
    (each rounded to 1 us); no stage outlasts the longest tick; reading the sensors, sending the frame and
    polling the UART always take time. Timing values themselves are not checked (the host may be loaded)."""
    st = figures["stages"]
    assert list(st) == STAGES, st
    for name, s in st.items():
        assert 0 <= s["mean_us"] <= s["max_us"] <= st["tick"]["max_us"], (name, st)
    for name in ("sense", "report", "listen", "tick"):
        assert st[name]["mean_us"] > 0, (name, st)
    tick = st["tick"]["mean_us"]
    assert abs(sum(st[n]["mean_us"] for n in STAGES[:-1]) - tick) <= 3 + 0.01 * tick, st
    ticks = figures.get("stage_ticks", figures.get("ticks"))
    assert ticks > 0 and (frames is None or ticks >= frames), (ticks, frames)  # the window holds the frames' ticks


@pytest.mark.slow
def test_bench_measures_the_loop_the_link_the_model_and_the_transfer(gen0, capsys):
    with Link(gen0.port) as link:
        hello = link.connect()
    rate, baud = hello["rate_hz"], hello["robot"]["link"]["baud"]

    f = bench_json(capsys, "--port", gen0.port)
    env, loop = f["environment"], f["loop"]
    assert env["port"] == gen0.port and env["baud"] == baud and env["firmware"] == hello["fw"]
    assert env["board_id"] == hello["board_id"] and env["micropython"] == "1.29.0"
    assert env["cpu"] == gen0.cpu.describe() and env["cpu"].startswith("esp32 (x30 bytecode") and "240 MHz" in env["cpu"]
    assert env["us"].startswith("an ESP32's") and env["us_tag"] == "ESP32 us, virtual Gen0"
    assert env["mpy"] == "6.3 x64"  # sys.implementation._mpy through host.flash.mpy's ARCHS
    assert abs(loop["loop_hz"] - rate) < 0.03 * rate, loop
    assert loop["rate_hz"] == rate and loop["achieved"] == loop["loop_hz"] / rate
    check_stages(loop, loop["frames"])
    assert loop["tx_waits"] >= 0
    assert 0 < loop["busy_us_p50"] <= loop["busy_us_p99"] and loop["drops"] == 0
    expected = WIRE_BYTES_PER_FRAME * rate * 10 / baud  # 83.5 % at 200 Hz, 115200 baud
    assert abs(loop["utilisation"] - expected) < 0.05 * expected, loop
    assert f["inference"]["model"] is None and "no model" in f["inference"]["note"]
    assert 0 < f["transfer"]["efficiency"] <= 1 and "traj slot" in f["transfer"]["what"]

    blob, reference = read_blob(MODELS / "gen0-default")
    with Link(gen0.port) as link:
        link.connect()
        deploy(link, blob, reference, checks=0, baud=baud)
    f = bench_json(capsys, "--port", gen0.port, "--seconds", "1")
    inf = f["inference"]
    assert inf["model"] == "%08x" % reference.model_id and inf["emitter"] == "viper"
    assert 0 < inf["us_per_inference"] <= inf["us_per_inference_median"] < 2000 and inf["n"] >= inf["calls"]
    assert 0 < f["transfer"]["efficiency"] <= 1

    assert cli.main(["bench", "--port", gen0.port, "--seconds", "1", "--model", str(MODELS / "sin")]) == 0
    text = capsys.readouterr().out
    for label in ("firmware", "cpu", "host", "loop rate", "busy_us", "stages", "telemetry", "inference", "transfer", "parity"):
        assert f"\n{label} " in text, text
    assert "deploy of model" in text and "64/64 random int8 vectors" in text and "% of 11520 B/s" in text
    rows = dict(line.split(None, 1) for line in text.splitlines() if line.split(None, 1)[0] in ("cpu", "busy_us", "stages", "inference"))
    assert rows["cpu"].startswith(gen0.cpu.describe()) and "the us below are an ESP32's" in rows["cpu"], rows
    assert all("(ESP32 us, virtual Gen0)" in rows[k] or "; ESP32 us, virtual Gen0)" in rows[k] for k in rows if k != "cpu"), rows
    assert f"Hz achieved of {RATE} Hz configured" in text and "sense " in rows["stages"] and "tick " in rows["stages"], text


@pytest.mark.slow
def test_bench_says_the_us_are_the_vms_own_on_a_virtual_gen0_at_host_speed(make_sim, capsys):
    gen0 = make_sim(cpu="host", preload=True)
    f = bench_json(capsys, "--port", gen0.port, "--seconds", "1")
    env = f["environment"]
    assert env["cpu"] == gen0.cpu.describe() and env["cpu"].startswith("host"), env
    assert "not an ESP32's" in env["us"] and "ESP32 us" not in env["us_tag"], env
    check_stages(f["loop"], f["loop"]["frames"])


def test_board_clock_of_a_real_board_and_of_a_simulator_note_without_a_cpu_model(monkeypatch):
    assert watch.board_clock("/dev/ttyUSB-not-a-sim") == {
        "cpu": "the board itself (measured µs)", "us": "measured on the board", "us_tag": "measured on the board"}
    note = {"pid": 1, "port": "/dev/pts/9", "link": None, "seed": 0, "flash_dir": "/tmp/x"}
    monkeypatch.setattr(watch.registry, "find", lambda port: note)
    assert "CPU model unknown" in watch.board_clock("/dev/pts/9")["us_tag"]
    note.update(cpu="esp32 x0 (x0 bytecode, x0 GC at 240 MHz)", cpu_model="esp32 x0")
    assert "CPU time free" in watch.board_clock("/dev/pts/9")["us_tag"]
    note.update(cpu="esp32 x25 (x25 bytecode, x41.6667 GC at 240 MHz)", cpu_model="esp32 x25")
    clock = watch.board_clock("/dev/pts/9")
    assert clock["cpu"] == note["cpu"] and clock["us_tag"] == "ESP32 us, virtual Gen0", clock


def test_a_bad_port_is_one_line(capsys):
    assert cli.main(["bench", "--port", "/dev/no-such-gen0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no serial port at /dev/no-such-gen0")


def test_mtime_times_the_active_model_within_its_budget_and_refuses_bad_requests(tmp_path):
    lines = command_lines((1, "mtime", 100), (2, "mtime", 0), (3, "mtime", "x"), (4, "mtime"), (5, "mtime", 10001))
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.run(100)\n"
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000))
    acks = acks_of(frames_of(run_on_vm(tmp_path, body, stdin=lines, robot=robot)))
    assert acks[1][0] == P.E_STATE and b"no model on this robot" in acks[1][1]
    assert acks[2][0] == acks[5][0] == P.E_RANGE and b"1..10000" in acks[2][1]
    assert acks[3][0] == acks[4][0] == P.E_ARG

    (tmp_path / "model.bin").write_bytes(read_blob(MODELS / "gen0-default")[0])
    lines = command_lines((1, "mtime", 100), (2, "mtime", 10000))
    acks = acks_of(frames_of(run_on_vm(tmp_path, body, stdin=lines, robot=robot)))
    few, many = json.loads(acks[1][1]), json.loads(acks[2][1])
    assert few["n"] == 100 and few["emitter"] == "viper" and few["us_per_inference"] > 0
    assert abs(few["us_per_inference"] - few["us"] / 100) < 0.01
    assert many["n"] < 10000 and 20000 <= many["us"] < 40000  # stopped by the 20 ms budget (~10 us each on the VM)


@pytest.mark.slow
def test_seconds_and_baud_that_measure_nothing_are_refused_before_the_board(gen0, capsys):
    for args in (["--seconds", "0"], ["--seconds", "-1"], ["--seconds", "nan"], ["--seconds", "inf"],
                 ["--baud", "0"], ["--baud", "-1"]):
        assert cli.main(["bench", "--port", gen0.port, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {args[0]} {args[1]}: give "), err
    with Link(gen0.port) as link:  # nothing was asked of the board: no transfer, no model
        assert link.connect()["model"] == "" and link.request_json("status")["model"] == ""
