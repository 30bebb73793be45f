"""The allocation-free path for `set` (CommandReader.take, Commands.line) against the general one.

In direct mode a plain `set <us> <us>` line is parsed in place in the reader's buffer (the viper
kernel protocol.plain_line: seq, name, ints, CRC-32 as a machine word), its pulses go into
preallocated ints and the ack out of the port's preallocated frame. Everything else goes the
general way (CommandReader.finish, Commands.run), which must give those lines the same answers.

- the kernel, viper on the VM and plain Python under CPython, accepts exactly the plain lines
  and reads them as finish() does;
- a stream of `set`s allocates nothing (micropython.heap_lock around Commands.feed, and around
  the loop reading them from stdin), while the general path under the same lock raises;
- fast and general paths give byte-identical acks (and counters, flags, targets) for the same
  bytes: good sets, clamped, non-integer, wrong arg count, bad CRC, outside direct mode, retries,
  other commands in between, random damage, any chunking.
"""

import binascii
import json
import random
import zlib

import pytest

from polyniod_firmware import protocol as P
from tests.mpvm import MicroPythonError, run_micropython
from tests.test_firmware_units import FIRMWARE, ROBOT, frames_of, run_on_vm

N_JOINTS = len(ROBOT["joints"])


def line(seq, name, *args):
    return P.encode_command(seq, name, [str(a) for a in args])


def signed(body):
    """A line from its text before the CRC, whatever the text (encode_command refuses odd ones)."""
    return body + b" %08x\n" % zlib.crc32(body)


def odd_lines(seq):
    """Lines at the edges of the plain shape, each with a good CRC unless it is about the CRC."""
    s = b"%d" % seq
    good = line(seq, "set", 1500, 1500)
    return [
        signed(s + b" set 01500 -0"), signed(s + b" set 999999999 -999999999"),  # plain: leading zeros, 9 digits
        signed(s + b" set 1234567890 1500"), signed(s + b" set +1500 1500"), signed(s + b" set 1_500 1500"),
        signed(s + b" set 0x10 1500"), signed(s + b" set 1.5 1500"), signed(s + b" set abc 1500"),
        signed(s + b" set - 1500"), signed(s + b" set -- 1500"), signed(s + b" set 1500 1500-"),
        signed(s + b" set 1500"), signed(s + b" set 1500 1500 1500"), signed(s + b" set"),
        signed(s + b" set " + b" ".join(b"%d" % i for i in range(9))),
        signed(s + b" set  1500 1500"), signed(s + b" set 1500  1500"), signed(s + b" set 1500 1500 "),
        signed(s + b" SET 1500 1500"), signed(s + b" sett 1500 1500"), signed(s + b" se 1500 1500"),
        signed(s + b" set_ 1500 1500"), signed(b"0 set 1500 1500"), signed(b"0" + s + b" set 1500 1500"),
        signed(b"65536 set 1500 1500"), signed(b"123456 set 1500 1500"), signed(b"65535 set 1500 1500"),
        signed(s + b" set\t1500 1500"), signed(s + b" set 1500 1500\r"), signed(s + b" set 1500 \x7f1500"),
        signed(s + b" set 1500 \x801500"), signed(b" " + s + b" set 1500 1500"),
        good[:-9] + good[-9:-1].upper() + b"\n",  # upper-case CRC
        good[:-3] + (b"0" if good[-3:-2] != b"0" else b"1") + good[-2:],  # one wrong CRC digit
        good[:-2] + b"\n",  # 7 CRC digits
        good[:-10] + b"\n",  # no CRC
        good[:-10] + b"x" + good[-10:],  # damage in the body
        s + b" set 1500 " + b"1" * 200 + b" 00000000\n",  # too long
        b"\n", b"\n\n",
    ]


# -- the kernel: what take() accepts, finish() reads the same way --------------------------------

def random_lines(rng, n):
    """Plain set lines, the odd ones above, and random damage to both (half of it re-signed)."""
    out = []
    for _ in range(n):
        seq = rng.choice([1, 9, 10, 99, 65535, rng.randrange(1, 65536)])
        kind = rng.random()
        if kind < 0.3:
            args = [rng.choice([rng.randrange(-10 ** 9 + 1, 10 ** 9), rng.randrange(-3000, 3000), 0])
                    for _ in range(rng.choice([2, 2, 2, 0, 1, 3, 8, 9]))]
            out.append(line(seq, rng.choice(["set", "set", "ping", "a_b"]), *args))
        elif kind < 0.5:
            out.append(rng.choice(odd_lines(seq)))
        else:
            raw = bytearray(line(seq, "set", rng.randrange(-99999, 99999), rng.randrange(0, 10 ** 9))[:-1])
            for _ in range(rng.randrange(1, 4)):
                at = rng.randrange(len(raw))
                op = rng.random()
                if op < 0.4:
                    raw[at] = rng.choice(b"0123456789 -+_asetSETxf\t\x7f\x80")
                elif op < 0.7:
                    del raw[at]
                else:
                    raw.insert(at, rng.choice(b"0123456789 -"))
            if rng.random() < 0.5:
                sp = raw.rfind(b" ")
                raw = bytearray(signed(bytes(raw[:sp]))[:-1]) if sp > 0 else raw
            out.append(bytes(raw) + b"\n")
    return out


def take_and_finish(reader_module, lines, width):
    """[(take's seq, its ints, counters after it, finish's item)] for each line, as the firmware sees it."""
    out = []
    for raw in lines:
        text = raw.rstrip(b"\n")
        buf = bytearray(P.MAX_LINE - 1)
        buf[:len(text)] = text
        r = reader_module.CommandReader()
        into = [0] * width
        seq = r.take(buf, len(text), b"set", into)
        lines_after = r.lines
        item = reader_module.CommandReader().finish(buf, len(text))
        out.append((seq, into if seq else None, lines_after, item))
    return out


def check_take(results, lines, width):
    accepted = 0
    for raw, (seq, into, counted, item) in zip(lines, results):
        if not seq:
            assert counted == 0, raw
            continue
        accepted += 1
        got_seq, name, args = item
        assert (got_seq, name, len(args)) == (seq, "set", width), raw
        assert [int(a) for a in args] == list(into), raw
        assert all(-2 ** 30 <= v < 2 ** 30 for v in into), raw
        assert counted == 1, raw
    return accepted


def test_take_accepts_exactly_plain_lines_and_reads_them_as_finish_does_cpython():
    rng = random.Random(7)
    lines = random_lines(rng, 3000) + odd_lines(12)
    results = take_and_finish(P, lines, N_JOINTS)
    assert check_take(results, lines, N_JOINTS) > 400
    for seq in (1, 99, 65535):  # every canonical plain line is taken
        for a, b in ((1500, 1500), (-999999999, 999999999), (0, -1), (100, 5000)):
            assert take_and_finish(P, [line(seq, "set", a, b)], N_JOINTS)[0][0] == seq
    assert take_and_finish(P, [line(5, "set", 1, 2, 3)], 3)[0][:2] == (5, [1, 2, 3])
    assert take_and_finish(P, [line(5, "ping")], 0)[0][:2] == (0, None)  # another name
    assert take_and_finish(P, [line(5, "set")], 0)[0][:2] == (5, [])


KERNEL_PROBE = """
import json, sys
import protocol as P
lines = [bytes.fromhex(h) for h in json.loads(sys.stdin.read())]
out = []
for raw in lines:
    text = raw[:-1] if raw[-1:] == b'\\n' else raw
    buf = bytearray(P.MAX_LINE - 1)
    buf[:len(text)] = text
    r = P.CommandReader()
    into = [0] * WIDTH
    seq = r.take(buf, len(text), b'set', into)
    item = P.CommandReader().finish(buf, len(text))
    out.append([seq, into if seq else None, r.lines, [item[0], item[1], item[2]]])
import emit
viper = emit.under('@micropython.viper', 'def f(x: int) -> int:\\n    return x', 'f') is not None
print(json.dumps([viper] + out))
"""


def test_the_viper_kernel_agrees_with_cpython():
    lines = random_lines(random.Random(11), 2500) + odd_lines(12)
    text = run_micropython(KERNEL_PROBE.replace("WIDTH", str(N_JOINTS)), sys_path=[FIRMWARE],
                           stdin=json.dumps([raw.hex() for raw in lines]), heap=32 << 20, timeout=120)
    kernel, *vm = json.loads(text)
    assert kernel is True  # this VM compiles viper: the kernel under test is the compiled one
    cpython = take_and_finish(P, lines, N_JOINTS)
    assert [[s, i, c, list(item)] for s, i, c, item in cpython] == vm
    assert check_take(cpython, lines, N_JOINTS) > 300


# -- allocation ----------------------------------------------------------------------------------

ALLOC_PROBE = """
import gc, sys, micropython, loop, config, protocol as P
store = bytearray(%(cap)d)
class Sink:  # keeps what the port writes in a preallocated buffer: writing allocates nothing
    def __init__(self):
        self.n = 0
    def write(self, buf, a=-1, b=-1):
        if a < 0:
            off, m = 0, len(buf)
        elif b < 0:
            off, m = 0, a
        else:
            off, m = a, b
        p = self.n
        for i in range(m):
            store[p + i] = buf[off + i]
        self.n = p + m
        return m
r = loop.Gen0(config.load())
r.port.out = Sink()
r.commands.fast = %(fast)r
rx = bytearray(64)
def feed(data, a, b):  # data[a:b] to the commands, 64 bytes at a time, as Gen0.receive hands them over
    while a < b:
        m = b - a if b - a < 64 else 64
        for i in range(m):
            rx[i] = data[a + i]
        r.commands.feed(rx, m)
        a += m
DATA = %(data)r
WARM = %(warm)d
feed(DATA, 0, WARM)
def locked():
    gc.collect()
    micropython.heap_lock()
    try:
        feed(DATA, WARM, len(DATA))
    except MemoryError as e:
        micropython.heap_unlock()
        sys.print_exception(e)
        return 'MemoryError'
    micropython.heap_unlock()
    return 'none'
result = locked()
r.port.flush()
print('RESULT', result, r.commands.reader.lines, r.mode_named('direct').target)
sys.stdout.write(store[:r.port.out.n].hex())
print()
"""


def set_stream(n, first_seq=2, retry_every=7):
    """`direct` then n plain sets (some re-sent: the host's retry), and where the warm-up ends."""
    out = [line(1, "direct")]
    for i in range(n):
        seq = first_seq + i
        out.append(line(seq, "set", 1000 + (i * 37) % 1000, 2000 - (i * 53) % 1200))
        if i % retry_every == 3:
            out.append(out[-1])
    return out


def run_alloc_probe(tmp_path, fast, lines, warm_lines=20):
    data = b"".join(lines)
    warm = len(b"".join(lines[:warm_lines]))
    body = ALLOC_PROBE % {"cap": 64 * len(lines) + 4096, "fast": fast, "data": data, "warm": warm}
    out = run_on_vm(tmp_path, body, robot=dict(ROBOT, link={"baud": 0}), timeout=120).decode("latin-1")
    result_line, hexed = out[out.index("RESULT"):].split("\n")[:2]
    return result_line, frames_of(bytes.fromhex(hexed))


def test_a_stream_of_sets_allocates_nothing(tmp_path):
    lines = set_stream(600)
    result, frames = run_alloc_probe(tmp_path, True, lines)
    assert result.startswith("RESULT none"), result
    acks = [P.parse_ack(f[3]) for f in frames if f[0] == P.T_ACK]
    want = [(int(raw.split(b" ")[0]), P.E_OK, b"") for raw in lines[1:]]
    assert acks[0][:2] == (1, P.E_OK) and acks[1:] == want  # every line acked, retries too, in order
    assert result.split()[2] == str(len(lines))  # status.rx.lines counted them all
    last = lines[-1].split(b" ")
    assert result.split(None, 3)[3] == "[%d, %d]" % (int(last[2]), int(last[3]))


def test_the_general_path_under_the_same_lock_raises(tmp_path):
    """The probe sees an allocation where there is one: the same stream the general way."""
    result, _ = run_alloc_probe(tmp_path, False, set_stream(60))
    assert result.startswith("RESULT MemoryError"), result


def test_the_loop_reading_sets_from_stdin_allocates_nothing(tmp_path):
    """Gen0.run with the heap locked while it reads a stream of sets from the VM's real stdin."""
    lines = set_stream(400)
    body = ("import sys, micropython, loop, config\n"
            "r = loop.Gen0(config.load())\n"
            "r.run(40)\n"  # `direct` and the first sets, each frame size once
            "def locked():\n"
            "    micropython.heap_lock()\n"
            "    try:\n"
            "        r.run(400)\n"
            "    except MemoryError as e:\n"
            "        micropython.heap_unlock()\n"
            "        sys.print_exception(e)\n"
            "        return 'MemoryError'\n"
            "    micropython.heap_unlock()\n"
            "    return 'none'\n"
            "result = locked()\n"
            "print('RESULT', result, r.commands.reader.lines, r.mode.name)\n")
    robot = dict(ROBOT, link={"baud": 0}, loop=dict(ROBOT["loop"], rate_hz=1000))
    out = run_on_vm(tmp_path, body, stdin=b"".join(lines), robot=robot, timeout=120)
    text = out.decode("latin-1")
    result = text[text.index("RESULT"):].split("\n")[0]
    assert result.startswith("RESULT none") and result.endswith("direct"), result
    assert int(result.split()[2]) > 300  # most of the stream was read inside the locked ticks
    acks = [P.parse_ack(f[3]) for f in frames_of(out[:out.index(b"RESULT")]) if f[0] == P.T_ACK]
    assert acks and all(code == P.E_OK for _, code, _ in acks)


# -- the same answers both ways ------------------------------------------------------------------

SAME_PROBE = """
import json, sys, loop, config
class Sink:
    def __init__(self):
        self.data = bytearray()
    def write(self, buf, a=-1, b=-1):
        if a < 0:
            self.data += buf
        elif b < 0:
            self.data += buf[:a]
        else:
            self.data += buf[a:a + b]
r = loop.Gen0(config.load())
r.port.out = Sink()
r.commands.fast = FAST
direct = r.mode_named('direct')
taken = [0]
take = r.commands.reader.take
def counting(line, k, name, into):
    seq = take(line, k, name, into)
    taken[0] += 1 if seq else 0
    return seq
r.commands.reader.take = counting
states = []
for chunk in json.loads(sys.stdin.read()):
    direct.flags = 1  # setpoint() clears it: whether a `set` ran (a retry must not run again)
    r.commands.feed(bytes.fromhex(chunk), len(chunk) // 2)
    rd = r.commands.reader
    states.append([rd.lines, rd.crc_errors, rd.syntax_errors, rd.overflows, r.latched, r.mode.name,
                   direct.target, direct.flags, r.target, r.rate_hz, r.telemetry_every])
    r.latched = 0
r.port.flush()
print(json.dumps([taken[0], states]))
print(r.port.out.data.hex())
"""


def answers(tmp_path, chunks, fast, firmware=FIRMWARE):
    """(states after each chunk, [frame] the port sent, lines the fast path took) on the VM, fast path on or off."""
    (tmp_path / "robot.json").write_text(json.dumps(ROBOT))
    (tmp_path / "bench_machine.py").write_text(__import__("tests.test_firmware_units").test_firmware_units.BENCH_MACHINE)
    script = ("import os, sys\nos.chdir(%r)\nimport bench_machine\nsys.modules['machine'] = bench_machine\n"
              % str(tmp_path)) + SAME_PROBE.replace("FAST", repr(fast))
    out = run_micropython(script, sys_path=[firmware, tmp_path], stdin=json.dumps([c.hex() for c in chunks]),
                          heap=32 << 20, timeout=120)
    states, hexed = out.strip().split("\n")[-2:]
    frames = []
    for ftype, _, _, payload in frames_of(bytes.fromhex(hexed)):
        if ftype == P.T_ACK:
            seq, code, data = P.parse_ack(payload)
            if data.startswith(b"{") and b'"uptime_ms"' in data:  # status: the clock, the heap and the
                d = json.loads(data)                               # waits on the UART (its pace) differ
                d.pop("uptime_ms")
                d.pop("mem_free")
                d.pop("tx_waits", None)
                data = json.dumps(d, sort_keys=True).encode()
            frames.append((ftype, seq, code, data))
        else:
            frames.append((ftype, payload))
    taken, states = json.loads(states)
    return states, frames, taken


def scripted_stream():
    """Every case in order: the lines (bytes) of one session."""
    L = []
    L += [line(2, "set", 1500, 1500), line(2, "set", 1500, 1500)]  # idle: E_STATE, then its retry re-acked
    L += [line(3, "ping"), line(4, "direct"), line(4, "direct")]
    L += [line(5, "set", 1200, 1700), line(5, "set", 1200, 1700)]  # a retry: re-acked, not run again
    L += [line(5, "set", 1300, 1600)]  # same seq, other args: a new command
    L += [line(6, "set", 100, 5000), line(7, "set", -20, 99999)]  # clamped by the servos (later), acked OK
    L += [line(8, "set", 1250, 1650), line(9, "ping"), line(8, "set", 1250, 1650)]  # not a retry any more: runs
    for i, raw in enumerate(odd_lines(10)):
        L += [raw, line(100 + 2 * i, "set", 1400 + i, 1500 - i)]
        if i % 3 == 0:
            L += [raw]  # the odd line again: its retry (or its error again)
    L += [line(200, "set", "+1500", 1500), line(200, "set", "+1500", 1500)]  # general-path set and its retry
    L += [line(201, "set", 1500, 1500), line(202, "status"), line(203, "stages"), line(204, "set", 1501, 1499)]
    L += [line(205, "rate", 100), line(206, "set", 1502, 1498), line(207, "telemetry", 5), line(208, "hello")]
    L += [line(208, "hello"), line(209, "set", 1503, 1497), line(210, "idle", "hold"), line(211, "set", 1, 2)]
    L += [line(211, "set", 1, 2), line(212, "direct"), line(213, "set", 1504, 1496), line(214, "frobnicate")]
    L += [line(215, "set", 1505, 1495), line(216, "stop"), line(217, "set", 1506, 1494), line(218, "direct")]
    L += [line(65535, "set", 1507, 1493), line(1, "set", 1508, 1492), line(1, "set", 1508, 1492)]
    L += [line(219, "status")]
    return L


def cut(data, rng, most=64):
    out = []
    i = 0
    while i < len(data):
        n = rng.choice([1, 2, 7, most, most, most, rng.randrange(1, most + 1)])
        out.append(data[i:i + n])
        i += n
    return out


def compare(tmp_path, chunks):
    a = tmp_path / "fast"
    b = tmp_path / "general"
    a.mkdir()
    b.mkdir()
    fast = answers(a, chunks, True)
    general = answers(b, chunks, False)
    assert fast[0] == general[0]  # counters, flags, mode, targets after every chunk
    assert fast[1] == general[1]  # every frame the port sent, in order (acks byte for byte)
    assert general[2] == 0 and fast[2] > 0
    return fast


def test_scripted_session_gives_the_same_acks_both_ways(tmp_path):
    lines = scripted_stream()
    states, frames, taken = compare(tmp_path, lines)  # one line per chunk
    assert taken >= 40
    acks = [f[1:] for f in frames if f[0] == P.T_ACK]
    assert len(acks) == sum(1 for raw in lines if raw.strip(b"\n"))
    code = dict(((s, c) for s, c, _ in acks))
    assert acks[0] == (2, P.E_STATE, b"set needs direct mode (send `direct` first); mode is idle") == acks[1]
    assert acks[5:8] == [(5, P.E_OK, b"")] * 3 and code[6] == code[7] == P.E_OK
    wrong_count = "set takes %d pulses in us, one per joint" % N_JOINTS
    assert (10, P.E_ARG, wrong_count.encode()) in acks
    assert (200, P.E_OK, b"") in acks and (211, P.E_STATE, b"set needs direct mode (send `direct` first); mode is idle") in acks
    assert sum(1 for a in acks if a[1] == P.E_CRC) >= 8 and any(a[1] == P.E_SYNTAX for a in acks)
    assert any(a[1] == P.E_TOO_BIG for a in acks) and any(a[1] == P.E_ARG and b"pulse must be an integer" in a[2] for a in acks)
    assert any(s[4] & 16 for s in states) and states[-1][5] == "direct"
    assert states[-1][6] == [1508, 1492]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_sessions_and_chunking_give_the_same_acks_both_ways(tmp_path, seed):
    rng = random.Random(seed)
    lines = [line(1, "direct")]
    for raw in random_lines(rng, 700):
        lines.append(raw)
        r = rng.random()
        if r < 0.15:
            lines.append(raw)  # re-sent
        elif r < 0.18:
            lines.append(rng.choice([line(rng.randrange(1, 9), "ping"), line(3, "idle", "hold"), line(4, "direct"),
                                     line(5, "status")]))
    chunks = cut(b"".join(lines), rng)
    assert compare(tmp_path, chunks)[2] >= 40
