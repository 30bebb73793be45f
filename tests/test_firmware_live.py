"""The firmware running for real: MicroPython VM, virtual Gen0 pins and physics, pty serial port.

Talks to the board with pyserial and firmware/protocol.py only (the same bytes a real ESP32
would get), and checks the physics' ground truth (board.truth()) where the firmware claims to
move something.
"""

import json
import statistics
import subprocess
import sys
import time
import zlib

import pytest
import serial

from host.link.client import Link
from host.link.schema import TelemetrySchema
from polyniod_firmware import programs
from polyniod_firmware import protocol as P
from host.firmware_files import load_robot
from tests.helpers import expect

pytestmark = pytest.mark.slow  # every test boots the firmware on a virtual Gen0 and streams (2.5-6 s each)


class Wire:
    """One open port: numbered command lines out, frames (and REPL text) in."""

    def __init__(self, port, baud=115200):
        self.ser = serial.Serial(port, baud, timeout=0.02)
        self.decoder = P.FrameDecoder()
        self.frames = []
        self.text = b""
        self.seq = 0
        self.hello = None
        self.schema = None

    def close(self):
        self.ser.close()

    def pump(self, seconds=0.0, until=None, must=True):
        """Read for `seconds` (or until until() holds); returns the frames that arrived. must: an until() that
        never held fails the test."""
        got = []
        end = time.monotonic() + seconds
        while True:
            for f in self.decoder.feed(self.ser.read(4096)):
                if f[0] == P.T_HELLO:
                    self.hello = json.loads(f[3])
                    self.schema = TelemetrySchema.from_hello(self.hello)
                got.append(f)
            self.text += self.decoder.take_text()
            if until and until(got):
                break
            if time.monotonic() > end:
                assert not (until and must), f"timed out; text: {self.text[-300:]!r}"
                break
        self.frames += got
        return got

    def send(self, seq, name, *args):
        self.ser.write(P.encode_command(seq, name, [str(a) for a in args]))

    def command(self, name, *args, timeout=2.0):
        """(code, data) of the ack to a fresh command."""
        self.seq += 1
        seq = self.seq
        self.send(seq, name, *args)
        return self.ack(seq, timeout)

    def ack(self, seq, timeout=2.0, must=True):
        """(code, data) of the ack of `seq`; None when it has not come in `timeout` s and not `must`."""
        got = self.pump(timeout, until=lambda fs: any(f[0] == P.T_ACK and P.parse_ack(f[3])[0] == seq for f in fs),
                        must=must)
        acks = [P.parse_ack(f[3]) for f in got if f[0] == P.T_ACK]
        return next(((code, data) for s, code, data in acks if s == seq), None)

    def ok(self, name, *args):
        code, data = self.command(name, *args)
        assert code == P.E_OK, (name, P.ERROR_NAMES.get(code), data)
        return json.loads(data) if data else None

    def connect(self, timeout=30.0):
        """The firmware's hello, asked for again every 2 s while the board boots (main.py at an ESP32's pace
        takes seconds, more on a loaded host): its ack E_OK, then the hello frame."""
        end = time.monotonic() + timeout
        while True:
            self.seq += 1
            self.send(self.seq, "hello")
            ack = self.ack(self.seq, 2.0, must=False)
            if ack:
                assert ack[0] == P.E_OK, ack
                break
            assert time.monotonic() < end, f"no answer to hello in {timeout:g} s; text: {self.text[-300:]!r}"
        self.pump(2, until=lambda fs: any(f[0] == P.T_HELLO for f in fs))
        return self.hello

    def telemetry(self, frames):
        """[(seq, t_us, {field: value in units})] of the telemetry frames among `frames`."""
        return [(f[1], f[2], self.schema.to_units(self.schema.unpack(f[3]))) for f in frames if f[0] == P.T_TELEMETRY]

    def logs(self, frames):
        return [P.parse_log(f[3])[1] for f in frames if f[0] == P.T_LOG]


@pytest.fixture
def wire(gen0):
    w = Wire(gen0.port)
    w.connect()
    yield w
    w.close()


def rate_of(tele):
    span = (tele[-1][1] - tele[0][1]) % P.TICKS_PERIOD
    return (len(tele) - 1) / span * 1e6


def test_hello_and_telemetry_at_the_configured_rate(gen0, wire):
    hello = wire.hello
    robot = load_robot()
    assert hello["proto"] == P.PROTOCOL_VERSION and hello["robot"]["joints"] == robot["joints"]
    assert len(hello["board_id"]) == 12 and int(hello["board_id"], 16)
    assert hello["ticks_period"] == 1 << 30 and hello["modes"] == ["idle", "direct", "program", "track"]
    assert hello["micropython"][0] == 1 and hello["mpy"] and hello["model"] == ""
    names = [f["name"] for f in hello["schema"]]
    assert names[:4] == ["busy_us", "overruns", "mode", "flags"] and "shoulder_deg" in names and "gz" in names
    wire.pump(0.5)  # past the stall of the hello frame (~0.3 s of link time at 115200)
    tele = wire.telemetry(wire.pump(2.0))
    assert rate_of(tele) == pytest.approx(robot["loop"]["rate_hz"], rel=0.03)  # device clock; slack for a busy host
    gaps = [(b[1] - a[1]) % P.TICKS_PERIOD for a, b in zip(tele, tele[1:])]
    assert statistics.median(gaps) == pytest.approx(1e6 / robot["loop"]["rate_hz"], abs=200)
    seqs = [s for s, _, _ in tele]  # nothing but telemetry in this window
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:])), "telemetry frames lost at the default rate / 115200"
    last = tele[-1][2]
    assert last["mode"] == 0 and int(last["flags"]) & 2  # idle, limp: nothing commanded since boot
    assert 0.8 < (last["ax"] ** 2 + last["ay"] ** 2 + last["az"] ** 2) ** 0.5 < 1.2  # gravity, in g
    truth = gen0.board.truth()
    for j, joint in enumerate(robot["joints"]):  # nominal calibration: this unit's ADC Vref may be ~10 % off
        fb = statistics.median(t[joint["name"] + "_deg"] for _, _, t in tele)
        assert abs(fb - truth["joints"][j]["gear_deg"]) < 12


def test_500_hz_on_a_921600_baud_link_is_more_than_an_esp32_holds(make_sim, tmp_path):
    """An ESP32's tick takes ~2 ms here (FIRMWARE.md, the loop): asked for 500 Hz, the loop runs as fast as
    it can, says so (overruns), and a 921600 baud link carries every telemetry frame of it."""
    robot = tmp_path / "robot.json"
    robot.write_text(json.dumps(dict(load_robot(), link={"baud": 921600})))  # the firmware paces its output for it
    gen0 = make_sim(preload=True, baud=921600, robot=robot)
    wire = Wire(gen0.port, 921600)
    try:
        wire.connect()
        assert wire.ok("rate", 500) == {"rate_hz": 500}
        wire.pump(0.3)
        before = wire.ok("status")
        tele = wire.telemetry(wire.pump(2.5))
        after = wire.ok("status")
    finally:
        wire.close()
    seqs = [s for s, _, _ in tele]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:])), "telemetry frames lost at 921600 baud"
    assert after["overruns"] > before["overruns"] and after["tx_dropped"] == 0
    assert rate_of(tele) > 100 and after["ticks"] > before["ticks"]


def test_direct_mode_moves_the_joints_clamps_and_trips_the_watchdog(gen0, wire):
    robot = load_robot()
    shoulder, elbow = robot["joints"]
    assert wire.command("set", 1500, 1500)[0] == P.E_STATE  # not in direct mode yet
    assert wire.ok("direct") == {"mode": "direct", "watchdog_ms": robot["watchdog_ms"]}
    seen = []
    for pulses in ((1200, 1750), (1700, 1250)):
        for _ in range(6):  # 0.9 s of fresh setpoints, faster than the watchdog
            wire.ok("set", *pulses)
            tele = wire.telemetry(wire.pump(0.15))
        t = tele[-1][2]
        truth = gen0.board.truth()["joints"]
        assert (t["shoulder_cmd_us"], t["elbow_cmd_us"]) == pulses and t["mode"] == 1
        assert not int(t["flags"]) & (1 | 2 | 4)
        assert [j["pulse_us"] for j in truth] == pytest.approx(pulses, abs=1)
        for j, us in enumerate(pulses):  # ~10 us/deg around 1450 us, give or take this unit's offsets
            assert truth[j]["angle_deg"] == pytest.approx((us - 1450) / 10, abs=8)
        seen.append((t, truth))
    (t0, truth0), (t1, truth1) = seen
    for j, name in enumerate(["shoulder", "elbow"]):  # the calibrated feedback follows the pot's moves
        moved = truth1[j]["gear_deg"] - truth0[j]["gear_deg"]
        assert t1[name + "_deg"] - t0[name + "_deg"] == pytest.approx(moved, abs=3 + 0.2 * abs(moved))

    wire.ok("set", 9000, 0)  # clamped to the limits
    tele = wire.telemetry(wire.pump(0.1))
    t = tele[-1][2]
    assert (t["shoulder_cmd_us"], t["elbow_cmd_us"]) == (shoulder["max_us"], elbow["min_us"])
    assert any(int(x["flags"]) & 4 for _, _, x in tele)
    assert [j["pulse_us"] for j in gen0.board.truth()["joints"]] == pytest.approx([shoulder["max_us"], elbow["min_us"]], abs=1)

    wire.ok("set", 1400, 1500)
    frames = wire.pump(robot["watchdog_ms"] / 1000 + 0.4)  # the host goes silent
    tele = wire.telemetry(frames)
    assert int(tele[-1][2]["flags"]) & 1 and any("watchdog" in text for text in wire.logs(frames))
    assert (tele[-1][2]["shoulder_cmd_us"], tele[-1][2]["elbow_cmd_us"]) == (1400, 1500)  # holding
    assert wire.ok("status")["watchdog"] is True
    wire.ok("set", 1450, 1450)
    t = wire.telemetry(wire.pump(0.1))[-1][2]
    assert not int(t["flags"]) & 1 and t["shoulder_cmd_us"] == 1450


@pytest.mark.parametrize("name,params", [
    ("steps", {"seed": 7, "duration_ms": 1200, "dwell_min_ms": 50, "dwell_max_ms": 300}),
    ("chirp", {"duration_ms": 1200, "f0_mhz": 500, "f1_mhz": 6000, "amp_us": 5000}),
    ("sweep", {"duration_ms": 1200, "levels": 3, "joints": "1"}),
    ("prbs", {"seed": 9, "duration_ms": 1200, "bit_ms": 40}),
])
def test_programs_run_deterministically_within_limits_and_end(gen0, wire, name, params):
    robot = wire.hello["robot"]
    rate = wire.hello["rate_hz"]
    first = len(wire.frames)
    ack = wire.ok("program", name, *("%s=%s" % kv for kv in params.items()))
    resolved = ack["program"]
    assert resolved == programs.resolve(name, params, len(robot["joints"])) and ack["ticks"] == 1200 * rate // 1000
    wire.pump(2.0, until=lambda fs: any("program done" in t for t in wire.logs(fs)))
    wire.pump(0.1)
    frames = wire.frames[first:]
    tele = wire.telemetry(frames)
    start = next(i for i, (_, _, t) in enumerate(tele) if t["mode"] == 2)
    run = tele[start:start + ack["ticks"]]
    seqs = [f[1] for f in frames]  # one counter over every frame type: no gap, nothing lost
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:])), "a frame was lost"
    names = [j["name"] for j in robot["joints"]]
    got = [tuple(int(t[n + "_cmd_us"]) for n in names) for _, _, t in run]
    want = programs.pulses(resolved, robot["joints"], rate)
    for j in range(len(names)):  # joints the program drives: exactly the host's regeneration
        if j in resolved["joints"]:
            assert [g[j] for g in got] == [w[j] for w in want], names[j]
            assert all(robot["joints"][j]["min_us"] <= g[j] <= robot["joints"][j]["max_us"] for g in got)
    assert [t["mode"] for _, _, t in run[:-1]] == [2] * (len(run) - 1) and tele[-1][2]["mode"] == 0
    assert tuple(int(tele[-1][2][n + "_cmd_us"]) for n in names) == got[-1]  # idle holds the last pulses
    assert not any(int(t["flags"]) & 4 for _, _, t in run)  # nothing needed clamping


def test_a_hello_too_long_for_a_frame_goes_without_its_lists_and_the_board_runs_on(make_sim, tmp_path):
    """A long robot description (here a 700-character description; `host check --write` adds its record) makes
    the hello longer than a frame holds: the board sends it without the program and trajectory lists, says so,
    and keeps running, instead of stopping at the REPL."""
    robot = tmp_path / "robot.json"
    robot.write_text(json.dumps(dict(load_robot(), description="a hot-glued limb; " * 40)))
    gen0 = make_sim(preload=True, robot=robot)
    with Link(gen0.port) as link:
        hello = link.connect()
        assert "programs" not in hello and "track" not in hello and hello.joints == ["shoulder", "elbow"]
        assert link.next_telemetry(timeout=2) is not None and link.request_json("status")["mode"] == "idle"
    assert len(json.dumps(hello.data)) <= P.MAX_PAYLOAD


@pytest.mark.parametrize("idle", ["hold", "limp"])
def test_ctrl_c_stops_streaming_and_leaves_the_servos_safe_at_the_repl(make_sim, tmp_path, idle):
    robot_file = tmp_path / "robot.json"
    robot_file.write_text(json.dumps(dict(load_robot(), idle=idle)))
    gen0 = make_sim(preload=True, robot=robot_file)
    wire = Wire(gen0.port)
    try:
        wire.connect()
        wire.ok("direct")
        wire.ok("set", 1300, 1600)
        wire.pump(0.3)
        wire.ser.write(b"\x03")
        wire.pump(3, until=lambda fs: b">>> " in wire.text)
        assert b"KeyboardInterrupt" in wire.text
        wire.text = b""
        assert not wire.telemetry(wire.pump(0.5)), "still streaming after Ctrl-C"
        wire.ser.write(b"print(6 * 7)\r")
        wire.pump(2, until=lambda fs: b"42" in wire.text)
        pwm = gen0.board.truth()["pwm"]  # pin -> (freq, duty_ns) of every running PWM
    finally:
        wire.close()
    if idle == "hold":
        pins = [j["pwm_pin"] for j in load_robot()["joints"]]
        assert [pwm[p][1] / 1000 for p in pins] == [pytest.approx(1300, abs=1), pytest.approx(1600, abs=1)]
    else:
        assert pwm == {}


def test_mpremote_interrupts_the_streaming_firmware(gen0):
    """mpremote's Ctrl-C stops the loop, its soft reset runs boot.py only: the raw REPL stays usable."""
    out = subprocess.run([sys.executable, "-m", "mpremote", "connect", gen0.port, "exec",
                          "import os; print(sorted(os.listdir()))"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.strip().splitlines()[-1]
    for name in ("boot.py", "main.py", "loop.py", "protocol.py", "robot.json"):
        assert repr(name) in listed


@pytest.mark.parametrize("left_at", ["open bracket", "raw REPL"])
def test_connect_starts_the_firmware_from_a_repl_left_mid_statement(gen0, left_at):
    """The firmware stopped by a Ctrl-C mid-transfer leaves the records in flight typed at the prompt, which
    can open a bracket: there Ctrl-D only ends the statement. connect() still soft-resets into main.py,
    and never takes the hello of the boot before for a new one."""
    with serial.Serial(gen0.port, timeout=0.1) as ser:
        ser.write(b"\x03")
        expect(ser, b">>> ", timeout=10)
        ser.write(b'x = {"a": (1,\r' if left_at == "open bracket" else b"\r\x01")
        expect(ser, b"... " if left_at == "open bracket" else b"raw REPL; CTRL-B to exit\r\n>", timeout=5)
    resets = gen0.counters()["soft_resets"]
    with Link(gen0.port) as link:
        hello = link.connect()
        assert link.request_json("status", timeout=1.0, retries=5)["mode"] == "idle"
    assert hello is not None and gen0.counters()["soft_resets"] == resets + 1


def test_bad_lines_are_nacked_and_counted(gen0, wire):
    wire.ser.write(b"7 ping 12345678\n")  # wrong CRC
    assert wire.ack(7)[0] == P.E_CRC
    body = b"9 Ping"
    wire.ser.write(body + b" %08x\n" % zlib.crc32(body))
    assert wire.ack(9)[0] == P.E_SYNTAX
    wire.ser.write(b"10 " + b"y" * 230 + b"\n")
    assert wire.ack(10)[0] == P.E_TOO_BIG
    wire.seq = 20
    assert wire.command("jump")[0] == P.E_UNKNOWN
    assert wire.command("rate", 5)[0] == P.E_RANGE
    assert wire.command("rate", "fast")[0] == P.E_ARG
    code, data = wire.command("program", "steps", "speed=3")
    assert code == P.E_ARG and b"speed" in data
    status = wire.ok("status")
    assert status["rx"]["crc"] == 1 and status["rx"]["syntax"] == 1 and status["rx"]["overflow"] == 1
    assert status["mode"] == "idle" and status["rate_hz"] == load_robot()["loop"]["rate_hz"] and status["imu"] is True
    flags = [int(t["flags"]) for _, _, t in wire.telemetry(wire.frames)]
    assert any(f & 16 for f in flags)


def test_xfer_writes_a_file_atomically_and_a_repeated_seq_is_not_rerun(gen0, wire):
    data = bytes(range(256)) * 4 + b"tail"
    crc = "%08x" % zlib.crc32(data)
    assert wire.command("xfer", "put", 0, P.encode_chunk(b"x"))[0] == P.E_STATE
    assert wire.ok("xfer", "begin", "file:cal.bin", len(data), crc)["chunk"] == P.CHUNK
    chunks = [data[i:i + P.CHUNK] for i in range(0, len(data), P.CHUNK)]
    for i, chunk in enumerate(chunks):
        wire.ok("xfer", "put", i * P.CHUNK, P.encode_chunk(chunk))
        if i == 2:  # the host lost this ack and retries: same seq, same line -> same answer, not a second put
            wire.send(wire.seq, "xfer", "put", i * P.CHUNK, P.encode_chunk(chunk))
            assert wire.ack(wire.seq) == (P.E_OK, b"")
    code, data_ = wire.command("xfer", "put", 0, P.encode_chunk(chunks[0]))
    assert code == P.E_OFFSET and str(len(data)).encode() in data_
    assert not (gen0.flash_dir / "cal.bin").exists()
    assert wire.ok("xfer", "end") == {"slot": "file:cal.bin", "size": len(data), "crc": crc}
    assert (gen0.flash_dir / "cal.bin").read_bytes() == data
    assert not (gen0.flash_dir / "cal.bin.tmp").exists()
    assert wire.command("xfer", "begin", "file:../escape", 4, crc)[0] == P.E_ARG
    assert wire.command("xfer", "begin", "file:huge.bin", 10 ** 6, crc)[0] == P.E_TOO_BIG
    wire.ok("xfer", "begin", "file:bad.bin", 4, "00000000")
    wire.ok("xfer", "put", 0, P.encode_chunk(b"abcd"))
    assert wire.command("xfer", "end")[0] == P.E_CHECK and not (gen0.flash_dir / "bad.bin").exists()
