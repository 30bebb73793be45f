"""The firmware's pieces under the real MicroPython VM, without the simulator.

Programs must give identical pulses under CPython and MicroPython; config, calibration,
telemetry, commands and the loop run on the VM itself. Where the loop needs the ESP32's
peripherals, BENCH_MACHINE stands in for them: integer-only so that the allocation test
measures the firmware's own heap use (the simulator's physics uses floats, which the VM boxes).
Commands arrive on the VM's real stdin and frames leave on its real stdout.
"""

import json
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from host.export import quantize as Q
from host.link.schema import TelemetrySchema
from polyniod_firmware import programs
from polyniod_firmware import protocol as P
from tests.mpvm import MicroPythonError, run_micropython

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
ROBOT = json.loads((FIRMWARE.parent / "hardware" / "gen0.json").read_text())
JOINTS = ROBOT["joints"]
RATE = ROBOT["loop"]["rate_hz"]  # the firmware's default loop rate

BENCH_MACHINE = '''
class Pin:
    def __init__(self, n, *a, **k):
        self.n = n
class PWM:
    events = []
    def __init__(self, pin, freq=50, duty_ns=0):
        self.pin = pin
        self.ns = duty_ns
        PWM.events.append(("on", pin.n, duty_ns))
    def duty_ns(self, ns):
        self.ns = ns
    def deinit(self):
        PWM.events.append(("off", self.pin.n))
class ADC:
    ATTN_11DB = 3
    reads_left = -1  # >= 0: fail (a broken driver) after this many more reads
    def __init__(self, pin):
        self.value = 20000 + 1000 * pin.n
    def atten(self, a):
        pass
    def read_u16(self):
        ADC.reads_left -= 1
        if ADC.reads_left == -1:
            raise RuntimeError("adc broke")
        return self.value
class I2C:
    present = True
    def __init__(self, i, scl=None, sda=None, freq=0):
        self.regs = bytearray(128)
        self.regs[0x75] = 0x68
        self.regs[0x3B:0x49] = bytes(range(1, 15))
    def readfrom_mem(self, addr, reg, n):
        if not I2C.present:
            raise OSError(19)
        return bytes(self.regs[reg:reg + n])
    def readfrom_mem_into(self, addr, reg, buf):
        for i in range(len(buf)):
            buf[i] = self.regs[reg + i]
    def writeto_mem(self, addr, reg, data):
        self.regs[reg] = data[0]
def unique_id():
    return b"\\xde\\xad\\xbe\\xef"
def reset():
    raise SystemExit
'''


def run_on_vm(tmp_path, body, stdin=b"", robot=None, timeout=60):
    """Run `body` on the VM in a flash-like folder (robot.json, bench machine); stdout as bytes."""
    (tmp_path / "bench_machine.py").write_text(BENCH_MACHINE)
    (tmp_path / "robot.json").write_text(json.dumps(robot or ROBOT))
    script = "import os, sys\nos.chdir(%r)\nimport bench_machine\nsys.modules['machine'] = bench_machine\n" % str(tmp_path)
    out = run_micropython(script + body, sys_path=[FIRMWARE, tmp_path], stdin=stdin, timeout=timeout)
    return out.encode("utf-8", "surrogateescape")


def frames_of(data):
    d = P.FrameDecoder()
    frames = d.feed(data)
    assert d.crc_errors == 0 and d.bad_escape == 0
    return frames


def acks_of(frames):
    return {P.parse_ack(f[3])[0]: P.parse_ack(f[3])[1:] for f in frames if f[0] == P.T_ACK}


# -- programs -------------------------------------------------------------------------------

CASES = [
    ("steps", {"seed": "3", "duration_ms": "4000"}),
    ("steps", {"seed": "4", "duration_ms": "4000", "joints": "1", "lo_us": "900", "hi_us": "5000"}),
    ("chirp", {"f0_mhz": "200", "f1_mhz": "8000", "duration_ms": "4000"}),
    ("chirp", {"f0_mhz": "5000", "f1_mhz": "100", "duration_ms": "3000", "amp_us": "2000", "center_us": "700"}),
    ("sweep", {"duration_ms": "4000", "levels": "5"}),
    ("prbs", {"seed": "11", "duration_ms": "4000", "bit_ms": "30"}),
    ("multisine", {"seed": "5", "duration_ms": "4000", "f0_mhz": "100", "f1_mhz": "8000", "n": "16", "tilt": "0",
                   "amp_us": "3000", "center_us": "700"}),
    ("multisine", {"seed": "6", "duration_ms": "4000", "f0_mhz": "50", "f1_mhz": "900", "n": "2", "joints": "1"}),
]


def test_programs_give_identical_pulses_under_cpython_and_micropython():
    script = (
        "import json, programs\n"
        "J = json.loads(%r)\n"
        "out = []\n"
        "for name, given in json.loads(%r):\n"
        "    p = programs.resolve(name, given, len(J))\n"
        "    out.append([p, programs.pulses(p, J, 250)])\n"
        "print(json.dumps(out))\n" % (json.dumps(JOINTS), json.dumps(CASES))
    )
    on_vm = json.loads(run_micropython(script, sys_path=[FIRMWARE]))
    for (name, given), (p_vm, pulses_vm) in zip(CASES, on_vm):
        p = programs.resolve(name, given, len(JOINTS))
        assert p == p_vm
        assert [list(t) for t in programs.pulses(p, JOINTS, 250)] == pulses_vm, name


def test_rng_is_the_full_period_lcg_mod_2_30():
    r = programs.Rng(123)
    x = 123
    for _ in range(20000):
        x = (29773421 * x + 12345) % (1 << 30)
        assert r.next() == x
    draws = [programs.Rng(5).below(7) for _ in range(1)] + [r.below(7) for _ in range(7000)]
    assert set(draws) == set(range(7)) and all(abs(draws.count(k) - 1000) < 150 for k in range(7))


def test_program_arithmetic_stays_in_the_esp32_small_ints():
    """Every int local of the step code stays in [-2**30, 2**30): no big-int allocation on the board."""
    bad = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename.endswith("programs.py"):
            def check(frame, event, arg):
                for k, v in list(frame.f_locals.items()) + list(getattr(frame.f_locals.get("self"), "__dict__", {}).items()):
                    if isinstance(v, int) and not -(1 << 30) <= v < (1 << 30):
                        bad.append((frame.f_code.co_name, k, v))
                return check
            return check if frame.f_code.co_name in ("step", "next", "below", "sin_q14") else None
        return None

    for name, given in CASES:
        p = programs.resolve(name, given, len(JOINTS))
        n, gens = programs.build(p, JOINTS, 1000)
        sys.settrace(tracer)
        try:
            for _ in range(min(n, 3000)):
                for g in gens:
                    if g:
                        g.step()
        finally:
            sys.settrace(None)
    assert not bad, bad[:5]


@pytest.mark.parametrize("name,given", CASES)
def test_programs_are_seeded_stay_in_limits_and_end(name, given):
    p = programs.resolve(name, given, len(JOINTS))
    pulses = programs.pulses(p, JOINTS, 200)
    assert len(pulses) == p["duration_ms"] * 200 // 1000
    for j, joint in enumerate(JOINTS):
        col = [t[j] for t in pulses]
        assert joint["min_us"] <= min(col) and max(col) <= joint["max_us"]
        if j not in p["joints"]:
            assert set(col) == {joint["center_us"]}
        else:
            assert sum(a != b for a, b in zip(col, col[1:])) > 3  # it moves
    assert programs.pulses(p, JOINTS, 200) == pulses
    if "seed" in p:
        other = programs.pulses(dict(p, seed=p["seed"] + 1), JOINTS, 200)
        assert other != pulses


def test_chirp_frequency_moves_from_f0_to_f1():
    p = programs.resolve("chirp", {"f0_mhz": 500, "f1_mhz": 4000, "duration_ms": 8000, "joints": "0"}, 2)
    col = [t[0] - JOINTS[0]["center_us"] for t in programs.pulses(p, JOINTS, 500)]
    crossings = [i for i in range(1, len(col)) if col[i - 1] < 0 <= col[i]]
    assert len(crossings) > 10
    for a, b in zip(crossings, crossings[1:]):
        t_mid = (a + b) / 2 / 500
        assert abs(500 / (b - a) / (0.5 + 3.5 * t_mid / 8) - 1) < 0.05


def test_sine_approximation():
    v = [programs.sin_q14(p) for p in range(65536)]
    assert max(v) == 16384 and min(v) == -16384
    assert max(abs(v[p] - 16384 * math.sin(2 * math.pi * p / 65536)) for p in range(65536)) < 10


@pytest.mark.parametrize("name,given,says", [
    ("wiggle", {}, "no program 'wiggle'"),
    ("steps", {"speed": "3"}, "steps takes no 'speed'"),
    ("steps", {"joints": "0,2"}, "joints are 0..1"),
    ("steps", {"seed": "x"}, "seed must be an integer, not 'x'"),
    ("steps", {"dwell_min_ms": "900", "dwell_max_ms": "100"}, "dwell_min_ms <= dwell_max_ms"),
    ("prbs", {"duration_ms": "0"}, "duration_ms must be"),
])
def test_bad_program_parameters_say_what_is_wrong(name, given, says):
    with pytest.raises(ValueError, match=says):
        programs.resolve(name, given, 2)


def test_program_limits_checked_against_the_joints():
    p = programs.resolve("chirp", {"f1_mhz": 60000}, 2)
    with pytest.raises(ValueError, match="quarter of the loop rate"):
        programs.build(p, JOINTS, 200)
    p = programs.resolve("steps", {"lo_us": 2500, "hi_us": 2600}, 2)
    with pytest.raises(ValueError, match="outside joint 0's limits"):
        programs.build(p, JOINTS, 200)


# -- config and calibration -----------------------------------------------------------------

@pytest.mark.parametrize("content,says", [
    (None, "robot.json missing: copy hardware/gen0.json there"),
    ("{not json", "robot.json is not valid JSON"),
    (json.dumps({**ROBOT, "idle": "float"}), 'idle must be "hold" or "limp"'),
    (json.dumps({**ROBOT, "loop": {"rate_hz": 5000, "telemetry_every": 1}}), "loop.rate_hz must be a number in 10..1000"),
    (json.dumps({k: v for k, v in ROBOT.items() if k != "joints"}), "joints is missing"),
    (json.dumps({**ROBOT, "joints": [{**JOINTS[0], "max_us": 500}]}), r"joints\[0\].max_us must be"),
])
def test_config_errors_are_one_clear_line(tmp_path, content, says):
    if content is not None:
        (tmp_path / "robot.json").write_text(content)
    body = "import os\nos.chdir(%r)\nimport config\nconfig.load()\n" % str(tmp_path)
    with pytest.raises(MicroPythonError, match=says):
        run_micropython(body, sys_path=[FIRMWARE])


def test_config_loads_gen0_with_defaults(tmp_path):
    (tmp_path / "robot.json").write_text(json.dumps(ROBOT))
    body = "import os, json\nos.chdir(%r)\nimport config\nprint(json.dumps(config.load()))\n" % str(tmp_path)
    cfg = json.loads(run_micropython(body, sys_path=[FIRMWARE]))
    assert cfg["joints"] == JOINTS and cfg["loop"]["max_rx_bytes_per_tick"] == 64 and cfg["xfer_max_bytes"] > 0


def test_calibration_is_the_nominal_linear_one_in_integers():
    fb = JOINTS[0]["feedback"]
    body = ("import feedback, json\nc = feedback.Calibration(%s)\n"
            "print(json.dumps([c.angle(r) for r in range(0, 65536, 37)]))\n" % json.dumps(fb))
    got = json.loads(run_micropython(body, sys_path=[FIRMWARE]))
    for raw, cdeg in zip(range(0, 65536, 37), got):
        volts = ((raw >> 4) * fb["adc_uv_per_lsb"] + fb["adc_uv_offset"]) / 1e6
        want = (volts - fb["pot_v_at_0"]) / fb["pot_v_per_deg"] * 100
        assert abs(cdeg - want) <= 0.5 + 1e-9


# -- telemetry, commands and the loop on the VM ----------------------------------------------

def track_blob(seed=0):
    """A small random model with inputs of every kind the device reads (history, IMU, look-ahead)."""
    rng = np.random.default_rng(seed)
    inputs = ["shoulder_target_deg@3", "elbow_deg@-2", "shoulder_cmd_us@-1", "gz", "elbow_raw", "elbow_target_deg@-1"]
    layers = [{"w": rng.uniform(-1, 1, (8, 6)), "b": rng.uniform(-1, 1, 8), "act": "tanh"},
              {"w": rng.uniform(-1, 1, (2, 8)), "b": rng.uniform(-1, 1, 2), "act": "linear"}]
    return Q.export(layers, rng.normal(size=(300, 6)), [0, 0, 1450, 0, 30000, 0], [30, 30, 300, 50, 5000, 30],
                    [1450, 1450], [300, 300], inputs, ["shoulder_cmd_us", "elbow_cmd_us"], "test")


@pytest.mark.slow
def test_hot_path_allocates_nothing(tmp_path):
    """gc disabled, telemetry on: idle, direct, every program and track tick without touching the heap."""
    (tmp_path / "model.bin").write_bytes(track_blob())
    body = (
        "import gc, loop, config\n"
        "r = loop.Gen0(config.load())\n"
        "def delta(n):\n"
        "    r.run(5)\n"
        "    gc.collect()\n"
        "    a = gc.mem_alloc()\n"
        "    r.run(n)\n"
        "    return gc.mem_alloc() - a\n"
        "gc.disable()\n"
        "out = [delta(300)]\n"
        "r.enter('direct', [])\n"
        "r.mode.setpoint([1000, 2000])\n"
        "out.append(delta(30))\n"
        "for p in (['steps', 'dwell_min_ms=10', 'dwell_max_ms=30'], ['chirp'], ['sweep'], ['prbs', 'bit_ms=10'],"
        " ['multisine']):\n"
        "    r.enter('program', p)\n"
        "    out.append(delta(300))\n"
        "for p in (['steps', 'dwell_min_ms=10', 'dwell_max_ms=30'], ['sine', 'controller=naive'], ['hold', 'controller=linear']):\n"
        "    r.enter('track', p)\n"
        "    out.append(delta(300))\n"
        "print('ALLOC', out, r.ticks, r.port.frames, r.port.dropped, r.port.count)\n"
    )
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000))
    text = run_on_vm(tmp_path, body, robot=robot).decode("latin-1")
    line = text[text.index("ALLOC"):].split("\n")[0]
    allocs = json.loads(line.split(" ", 1)[1].rsplit("]", 1)[0] + "]")
    assert allocs == [0] * 10, line
    ticks, sent, dropped, queued = (int(v) for v in line.rsplit("]", 1)[1].split())
    frames = frames_of(text.encode("latin-1"))
    telemetry = sum(f[0] == P.T_TELEMETRY for f in frames)
    # 1 kHz of telemetry is 4x what 115200 baud carries: frames the UART queue has no room for are
    # dropped (their seq spent), never the loop's rate; every tick's frame is sent, dropped or still queued
    assert ticks >= 2400 and telemetry >= 400 and dropped > 0, line
    assert telemetry + dropped + queued // 48 >= ticks - 5, line


def command_lines(*commands):
    return b"".join(P.encode_command(seq, name, [str(a) for a in args]) for seq, name, *args in commands)


def records_of(data, first_seq, start=0):
    """The host's records of data from offset start on: [(seq, start, end, line)]."""
    out, seq = [], first_seq
    while start < len(data):
        line, end = P.encode_record(seq, data, start)
        out.append((seq, start, end, line))
        start, seq = end, seq + 1
    return out


def ack_list(frames):
    return [P.parse_ack(f[3]) for f in frames if f[0] == P.T_ACK]


def test_records_land_in_order_and_a_gap_says_where_the_board_is(tmp_path):
    """Records as the host's go-back-N sends them: a damaged one (a flipped bit, or bytes a full ring
    dropped) is refused with seq 0, the next says the offset the board expects (E_OFFSET, its data),
    the rest sent again from there lands the exact bytes; a stale one is refused the same way."""
    blob = bytes((i * 7 + 3) & 0xFF for i in range(700)) + b"\x03\x0a\x10\x01" * 40
    first = records_of(blob, 20)
    damaged = bytearray(first[1][3])
    damaged[10] ^= 4
    again = records_of(blob, 40, first[1][1])
    lines = command_lines((1, "xfer", "begin", "file:rec.bin", len(blob), "%08x" % zlib.crc32(blob)))
    lines += first[0][3] + bytes(damaged) + first[2][3] + b"".join(r[3] for r in again)
    lines += first[1][3] + command_lines((2, "xfer", "end")) + first[0][3]
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.run(400)\n"
    acks = ack_list(frames_of(run_on_vm(tmp_path, body, stdin=lines, robot=dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000)))))
    begin = json.loads(acks[0][2])
    assert acks[0][:2] == (1, P.E_OK) and begin["window"] >= P.MAX_LINE
    assert acks[1] == (20, P.E_OK, b"") and acks[2] == (0, P.E_CRC, b"")
    assert acks[3] == (22, P.E_OFFSET, b"%d" % first[1][1])  # the gap: where the board is
    assert acks[4:4 + len(again)] == [(seq, P.E_OK, b"") for seq, *_ in again]
    rest = acks[4 + len(again):]
    assert rest[0] == (21, P.E_OFFSET, b"%d" % len(blob))  # stale: the board has it all
    assert rest[1][:2] == (2, P.E_OK) and json.loads(rest[1][2])["size"] == len(blob)
    assert rest[2][:2] == (20, P.E_STATE)  # no transfer any more
    assert (tmp_path / "rec.bin").read_bytes() == blob


def test_a_record_stores_without_allocating(tmp_path):
    blob = bytes(range(256)) * 8
    recs = records_of(blob, 100)
    begin = command_lines((1, "xfer", "begin", "file:a.bin", len(blob), "%08x" % zlib.crc32(blob)))
    body = ("import gc, loop, config\nr = loop.Gen0(config.load())\nlines = %r\n"
            "for i in range(2):\n    r.commands.feed(lines[i], len(lines[i]))\n"  # the begin, and a first record
            "gc.collect()\nbefore = gc.mem_alloc()\n"
            "for i in range(2, len(lines)):\n    r.commands.feed(lines[i], len(lines[i]))\n"
            "print('ALLOC', gc.mem_alloc() - before, r.commands.transfer.n)\n") % ([begin] + [bytearray(r[3]) for r in recs],)
    text = run_on_vm(tmp_path, body).decode("latin-1")
    allocated, stored = text[text.index("ALLOC"):].split()[1:3]
    assert (int(allocated), int(stored)) == (0, len(blob))


def test_commands_are_acked_and_telemetry_decodes_by_schema(tmp_path):
    blob = bytes(range(256)) * 3
    chunks = [blob[i:i + P.CHUNK] for i in range(0, len(blob), P.CHUNK)]
    lines = command_lines(
        (1, "hello"), (2, "ping"), (3, "set", 1500, 1500), (4, "direct"), (5, "set", 5000, 100),
        (6, "rate", 5), (7, "telemetry", 2), (8, "frobnicate"), (9, "idle", "sideways"),
        (10, "xfer", "begin", "file:blob.bin", len(blob), "%08x" % zlib.crc32(blob)),
        *[(11 + i, "xfer", "put", i * P.CHUNK, P.encode_chunk(c)) for i, c in enumerate(chunks)],
    )
    k = 11 + len(chunks)
    lines += P.encode_command(k - 1, "xfer", ["put", str((len(chunks) - 1) * P.CHUNK), P.encode_chunk(chunks[-1])])  # retry
    lines += command_lines((k, "xfer", "put", 0, P.encode_chunk(chunks[0])), (k + 1, "xfer", "end"))
    lines += b"77 ping 0badf00d\n" + b"x" * 300 + b"\n" + b"78 PING %08x\n" % zlib.crc32(b"78 PING")
    lines += command_lines((k + 2, "xfer", "begin", "file:../x", 10, "00000000"),
                           (k + 3, "xfer", "begin", "file:big.bin", 10 ** 6, "00000000"),
                           (k + 4, "program", "steps", "seed=3", "duration_ms=100"), (k + 5, "rate", 300),
                           (k + 6, "status"), (k + 7, "stop"), (k + 8, "status"))
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.send_hello()\nr.run(600)\n"
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000))
    frames = frames_of(run_on_vm(tmp_path, body, stdin=lines, robot=robot))
    acks = acks_of(frames)
    codes = {seq: a[0] for seq, a in acks.items()}
    assert codes[1] == codes[2] == codes[4] == codes[5] == codes[7] == P.E_OK
    assert codes[3] == P.E_STATE and codes[6] == P.E_RANGE and codes[8] == P.E_UNKNOWN and codes[9] == P.E_ARG
    assert all(codes[s] == P.E_OK for s in range(10, k))  # k - 1 twice: the retry was not re-run and codes[k + 1] == P.E_OK
    assert codes[k] == P.E_OFFSET and b"expected offset 768" in acks[k][1]
    assert (tmp_path / "blob.bin").read_bytes() == blob and not (tmp_path / "blob.bin.tmp").exists()
    assert codes[77] == P.E_CRC and codes[0] == P.E_TOO_BIG and codes[78] == P.E_SYNTAX
    assert codes[k + 2] == P.E_ARG and codes[k + 3] == P.E_TOO_BIG
    assert codes[k + 4] == P.E_OK and codes[k + 5] == P.E_BUSY and codes[k + 6] == P.E_OK
    program = json.loads(acks[k + 4][1])["program"]
    assert program == programs.resolve("steps", {"seed": 3, "duration_ms": 100}, 2)
    status = json.loads(acks[k + 6][1])
    assert status["rx"]["crc"] == 1 and status["rx"]["overflow"] == 1 and status["rx"]["syntax"] == 1
    assert status["mode"] == "program" and status["imu"] is True and status["progress"][1] == 100
    assert codes[k + 7] == P.E_OK and json.loads(acks[k + 8][1])["mode"] == "idle"

    hellos = [json.loads(f[3]) for f in frames if f[0] == P.T_HELLO]
    assert len(hellos) == 2 and hellos[0]["board_id"] == "deadbeef" and hellos[0]["proto"] == P.PROTOCOL_VERSION
    schema = TelemetrySchema.from_hello(hellos[0])
    assert schema.size == 35
    tele = [(f[1], schema.to_units(schema.unpack(f[3]))) for f in frames if f[0] == P.T_TELEMETRY]
    clamped = [t for _, t in tele if t["mode"] == 1 and t["shoulder_cmd_us"] == JOINTS[0]["max_us"]]
    assert clamped and clamped[0]["elbow_cmd_us"] == JOINTS[1]["min_us"]
    assert any(int(t["flags"]) & 4 for _, t in tele), "clamped flag"
    assert any(int(t["flags"]) & 16 for _, t in tele), "rx_error flag"
    t = tele[-1][1]
    assert t["shoulder_raw"] == 20000 + 1000 * JOINTS[0]["adc_pin"]
    lsb_per_dps = {250: 131, 500: 65.5, 1000: 32.8, 2000: 16.4}[ROBOT["imu"]["gyro_fs_dps"]]
    assert abs(t["ax"] - 0x0102 * ROBOT["imu"]["accel_fs_g"] / 32768) < 1e-9
    assert abs(t["gz"] - 0x0D0E / lsb_per_dps) < 1e-6
    seqs = [f[1] for f in frames]
    assert seqs == sorted(set(seqs))  # one counter over every frame type; at 1 kHz on 115200 baud the UART
    assert len(seqs) < seqs[-1] - seqs[0] + 1  # queue drops telemetry frames it has no room for: gaps


def test_direct_watchdog_holds_and_logs(tmp_path):
    lines = command_lines((1, "direct"), (2, "set", 1200, 1700))
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.send_hello()\nr.run(500)\n"
    robot = dict(ROBOT, watchdog_ms=100, loop=dict(ROBOT["loop"], rate_hz=1000))
    frames = frames_of(run_on_vm(tmp_path, body, stdin=lines, robot=robot))
    logs = [P.parse_log(f[3]) for f in frames if f[0] == P.T_LOG]
    assert any("watchdog" in text for _, text in logs)
    schema = TelemetrySchema.from_hello(json.loads(next(f[3] for f in frames if f[0] == P.T_HELLO)))
    tele = [schema.unpack(f[3]) for f in frames if f[0] == P.T_TELEMETRY]
    t_ms = [(f[2] - frames[0][2]) / 1000 for f in frames if f[0] == P.T_TELEMETRY]  # frames are dropped at 1 kHz
    flags = [v[3] for v in tele]
    first_trip = next(i for i, f in enumerate(flags) if f & 1)
    assert 80 <= t_ms[first_trip] <= 200 and all(f & 1 for f in flags[first_trip:])
    assert tele[-1][4] == 1200 and tele[-1][8] == 1700  # still holding the last setpoints (shoulder_cmd_us, elbow_cmd_us)


def test_idle_limp_stops_pulses(tmp_path):
    lines = command_lines((1, "direct"), (2, "set", 1400, 1400))
    limp = command_lines((3, "idle", "limp"))
    body = ("import loop, config, bench_machine as m\nr = loop.Gen0(config.load())\nr.run(20)\n"
            "r.commands.feed(%r, %d)\nr.run(20)\nprint('EVENTS', m.PWM.events)\n") % (limp, len(limp))
    text = run_on_vm(tmp_path, body, stdin=lines).decode("latin-1")
    events = text[text.index("EVENTS"):]
    assert "('on', 25, 1400000)" in events and "('off', 25)" in events and "('off', 26)" in events


def test_no_imu_still_runs_and_flags_it(tmp_path):
    body = ("import bench_machine as m\nm.I2C.present = False\nimport loop, config\n"
            "r = loop.Gen0(config.load())\nr.send_hello()\nr.run(20)\n")
    frames = frames_of(run_on_vm(tmp_path, body))
    hello = json.loads(next(f[3] for f in frames if f[0] == P.T_HELLO))
    assert hello["imu"]["ok"] is False and "no MPU-6050 answers on I2C0 address 0x68" in hello["imu"]["error"]
    tele = [f for f in frames if f[0] == P.T_TELEMETRY]
    assert len(tele) == 20 and all(f[3][5] & 8 for f in tele)


def test_an_error_leaves_the_servos_safe_logs_and_reraises(tmp_path):
    lines = command_lines((1, "direct"), (2, "set", 1400, 1400))
    body = ("import loop, bench_machine as m\nm.ADC.reads_left = 100\n"
            "try:\n    loop.run()\nexcept RuntimeError as e:\n    print('RAISED', e, m.PWM.events)\n")
    out = run_on_vm(tmp_path, body, stdin=lines, robot=dict(ROBOT, idle="limp"))
    logs = [P.parse_log(f[3]) for f in frames_of(out) if f[0] == P.T_LOG]
    assert (P.LOG_ERROR, "firmware stopped: RuntimeError: adc broke") in logs
    assert b"RAISED adc broke" in out and b"('off', 25)" in out and b"('off', 26)" in out
