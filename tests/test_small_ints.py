"""The firmware's hot path stays inside the ESP32's 31-bit small ints (no big-int allocation per tick).

tests/smallints.py runs the real firmware objects under CPython with every arithmetic result and
every result of a non-firmware call (binascii.crc32, time.ticks_*, int(), struct.unpack*, ...)
checked against [-2**30, 2**30 - 1], on a fake ESP32 whose ticks_us/ticks_ms wrap at 2**30 (the
clock starts 50 ms before the wrap). Scenarios: idle (hold, limp, bad lines, rate, telemetry),
direct with a stream of `set`s then the watchdog, every program (extreme parameters too), track
hold/steps/sine/traj (host-sent over xfer) with the naive, linear and model controllers (the
shipped models/gen0-default blob; once with mlp's plain, non-viper kernel), mtest/mtime, a file
transfer on a 115200-baud link at 1 kHz with the IMU failing, and the loop's counters at 2**30 - 1.

Values seen while a command runs (phase "command": mode entry, acks) are held to the same rule, so
each is on the allow-list below with why it is (or is not) a hot-path problem. Values at boot
(imports, Gen0(), loading model.bin) are not checked. Viper code is out of scope (32-bit words).

    python -m tests.smallints     prints every site the scenarios push out of the small ints
"""

import pytest

from tests import smallints as S

# Known offenders: (file, function, expression or a part of it) -> what the value is; hot path or not.
# A fix in the firmware makes its entry stale, and test_allow_list_has_no_stale_entries asks to remove it.
ALLOWED = {
    # -- per received command line: not allocation-free anyway -----------------------------------------
    ("firmware/protocol.py", "CommandReader._finish", "binascii.crc32("):
        "CRC-32 of a received command line taken the general way (uint32, ~3 in 4 >= 2**30): every command "
        "but a plain `set` in direct mode, whose CRC the viper kernel plain_line checks as a machine word. "
        "Once per line, on a path that allocates anyway (bytes(line[:k]), '%08x' %, split, decode).",
    # -- once per command (mode entry, transfers, hello): not the hot path -------------------------------
    ("firmware/protocol.py", "write_frame", "binascii.crc32("):
        "CRC-32 of the hello frame (boot and `hello` only); that path builds ~3.7 KB of JSON anyway.",
    ("firmware/commands.py", "Transfer.end", "binascii.crc32(self.buf)"):
        "CRC-32 of a finished transfer, once per `xfer end`.",
    ("firmware/commands.py", "Commands.xfer", "int(args[3], 16)"):
        "the announced CRC-32 of `xfer begin`, once per transfer.",
    ("firmware/programs.py", "phase_step", "f_mhz << PHASE_BITS"):
        "f_mhz * 2**24 (up to 2**42) at program/track start; the result (phase per tick, < 2**22) is small. "
        "Once per `program chirp|sweep|multisine` / `track sine`, with the command's other allocations.",
    ("firmware/programs.py", "ticks", "ms * rate_hz"):
        "duration_ms * rate_hz at program/track start (3.6e9 for an hour at 1 kHz); once per command.",
    ("firmware/programs.py", "build", 'params["seed"] + 0x9E37 * j'):
        "per-joint seed for seed near 2**30 (Rng masks it to 30 bits); once per `program steps|prbs`.",
    ("firmware/track.py", "trajectory", 'p["seed"] + 0x9E37 * j'):
        "per-joint seed for seed near 2**30 (Rng masks it to 30 bits); once per `track steps`.",
}

# Hot-path functions the scenarios must execute (at least one checked expression each).
HOT = {
    "firmware/loop.py": ["Gen0.run", "Gen0.tick", "Gen0.receive", "Direct.step", "Direct.setpoint", "Program.step",
                         "StageTimes.add"],
    "firmware/feedback.py": ["Feedback.read"],
    "firmware/imu.py": ["Mpu6050.read"],
    "firmware/servo.py": ["Servo.write", "Servo.limp"],
    "firmware/programs.py": ["Rng.next", "Rng.below", "sin_q14", "Steps.step", "Sine.step", "Prbs.step",
                               "Multisine.step"],
    "firmware/track.py": ["Track.step", "Track.produce", "Sent.step", "Naive.step", "Linear.step", "Mlp.step", "Mlp.read"],
    "firmware/mlp.py": ["Model.infer_q"],
    "firmware/mlp.py<exec>": ["layer"],  # the plain kernel, once
    "firmware/telemetry.py": ["Telemetry.emit", "Port.send", "Port.pump", "Port.ack", "Port.log"],
    "firmware/protocol.py": ["FrameWriter.pack", "CommandReader.feed_each", "CommandReader.take", "CommandReader.finish",
                             "CommandReader._finish"],
    "firmware/commands.py": ["Commands.feed", "Commands.line", "Commands.repeats", "Commands.run",
                             "Commands.set", "Transfer.put", "Commands.mtest", "Commands.mtime"],
}
# Branches worth seeing taken: the frame escaping loop, chirp's carry, sweep's stairs, a received byte.
HOT_EXPRESSIONS = [
    ("firmware/protocol.py", "FrameWriter.pack", "b ^= 0x20"),
    ("firmware/programs.py", "Sine.step", "self.acc -= self.n"),
    ("firmware/programs.py", "Sine.step", "self.f += self.df"),
    ("firmware/loop.py", "Gen0.receive", "self.rx_bytes - (_MASK - n) - 1"),
    ("firmware/protocol.py", "CommandReader.feed_each", "i << 8 | take"),  # received bytes copied by the kernel
    ("firmware/commands.py", "Commands.line", "self.port.ack(seq, ack[0], ack[1])"),  # a `set` re-acked on the fast path
    ("firmware/loop.py", "Gen0.run", "self.overruns + 1"),
]


def allowed(site):
    for key in ALLOWED:
        file, func, expr = key
        if site.file == file and site.func == func and expr in site.expr:
            return key
    return None


def describe(rec):
    s = rec.site
    per = " in %d ticks (up to %d a tick)" % (rec.ticks, rec.max_per_tick) if rec.ticks else ""
    return "%s:%d %s: %s = %d, %d times%s %s via %s" % (
        s.file, s.line, s.func, s.expr, rec.sample(), rec.count, per, rec.phases, " > ".join(rec.stack or ()))


@pytest.fixture(scope="module")
def scenarios():
    return S.run_scenarios()


def test_checker_flags_a_deliberate_overflow():
    """The checker itself: what must be flagged is, what must not be is not, viper is left alone."""
    assert S.big(1 << 30) and S.big(-(1 << 30) - 1) and not S.big((1 << 30) - 1) and not S.big(-(1 << 30))
    assert not S.big(True) and not S.big(2.0 ** 40)
    c = S.Checker()
    ns = c.snippet(
        "import binascii, struct, micropython\n"
        "def f(x):\n"
        "    s = x * 20000 + (1 << 29)\n"  # 8e8 is small; 8e8 + 2**29 is not: the sum is flagged
        "    z = x * 40000\n"  # 1.6e9
        "    n = -z\n"
        "    acc = 1 << 29\n"
        "    acc += acc\n"  # 2**30
        "    c = binascii.crc32(b'x')\n"  # 0x8cdc1683
        "    u = struct.unpack_from('<I', b'\\xff\\xff\\xff\\xff')[0]\n"
        "    ok = (x * 20000) >> 1\n"  # small all the way
        "    return z\n"
        "@micropython.viper\n"
        "def v(x):\n"
        "    return x * 40000\n"
    )
    ns["f"](40000)
    ns["v"](40000)
    flagged = {rec.site.expr: rec for rec in c.records.values()}
    assert set(flagged) == {"x * 20000 + (1 << 29)", "x * 40000", "-z", "acc += acc", "binascii.crc32(b'x')",
                            "struct.unpack_from('<I', b'\\xff\\xff\\xff\\xff')"}, sorted(flagged)
    assert flagged["x * 40000"].sample() == 1600000000 and flagged["-z"].sample() == -1600000000
    assert flagged["acc += acc"].sample() == 1 << 30 and flagged["binascii.crc32(b'x')"].sample() == 0x8CDC1683
    assert all(rec.site.func == "f" and rec.phases == {"harness": 1} for rec in flagged.values())
    # ... and an offender that is not on the allow-list fails the main test's check
    assert [rec for rec in c.records.values() if allowed(rec.site) is None] == list(c.records.values())


def test_an_offender_in_the_firmware_fails_the_check():
    """The real firmware, one object set up to overflow: a 2**21 µs pulse makes Servo.write's ns a big int."""
    c = S.Checker(start_us=S.NEAR_WRAP_US)
    with S.flash_folder() as flash:
        r = c.robot(flash, model=False, loop={"telemetry_every": 0})  # telemetry's "H" could not carry the pulse
        cmd = S.Commands()
        s = r.servos[0]
        s.lo = s.hi = 1 << 21
        c.run(r, 10, {1: [cmd("direct")], 3: [cmd("set", 1500, 1500)]})
    bad = [rec for rec in c.records.values() if set(rec.phases) & {"tick", "command"} and allowed(rec.site) is None]
    assert {(rec.site.file, rec.site.func) for rec in bad} == {("firmware/servo.py", "Servo.write")}, bad
    assert all(rec.sample() == (1 << 21) * 1000 and "tick" in rec.phases for rec in bad)


def test_clock_stand_in_has_the_esp32_period():
    c = S.Checker(start_us=(1 << 30) - 10, read_cost_us=0)
    t = c.stubs["time"]
    a = t.ticks_us()
    t.sleep_us(25)
    b = t.ticks_us()
    assert b < a and t.ticks_diff(b, a) == 25 and t.ticks_add(a, 25) == b == 15
    assert t.ticks_diff(0, (1 << 30) - 1) == 1 and t.ticks_diff((1 << 30) - 1, 0) == -1
    with pytest.raises(OverflowError):
        t.ticks_add(0, 1 << 29)


@pytest.mark.slow
def test_the_hot_path_stays_in_the_small_ints(scenarios):
    records, info, _ = scenarios
    bad = [rec for rec in records.values() if set(rec.phases) & {"tick", "command"} and allowed(rec.site) is None]
    assert not bad, ("ints outside [-2**30, 2**30 - 1] (a heap-allocated big int on the ESP32); fix the firmware, "
                     "or add a documented entry to ALLOWED:\n" + "\n".join(describe(r) for r in bad))


@pytest.mark.slow
def test_allow_list_has_no_stale_entries(scenarios):
    records, _, _ = scenarios
    hit = {allowed(rec.site) for rec in records.values()}
    stale = [k for k in ALLOWED if k not in hit]
    assert not stale, "no longer seen (fixed? then remove from ALLOWED): %s" % stale


@pytest.mark.slow
def test_scenarios_cover_the_hot_path_across_a_ticks_wrap(scenarios):
    _, info, seen = scenarios
    assert all(i["wrapped"] for i in info.values()), [n for n, i in info.items() if not i["wrapped"]]
    assert sum(i["ticks"] for i in info.values()) > 20000
    ran = {(S.SITES[sid].file, S.SITES[sid].func) for sid in seen}
    missing = [(f, fn) for f, fns in HOT.items() for fn in fns if (f, fn) not in ran]
    assert not missing, "hot-path functions the scenarios never ran: %s" % missing
    exprs = {(S.SITES[sid].file, S.SITES[sid].func, S.SITES[sid].expr) for sid in seen}
    assert not [e for e in HOT_EXPRESSIONS if e not in exprs], [e for e in HOT_EXPRESSIONS if e not in exprs]
