"""The wire protocol: the same vectors under CPython and the real MicroPython VM, plus fuzzing.

The vectors come from a spec-literal reference, not from the module; both interpreters must
reproduce them exactly, so the firmware and the host provably speak the same protocol.
"""
import itertools
import json
import random
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyniod_firmware import protocol as P
from tests import mp_protocol_vectors as runner
from tests.mpvm import run_micropython

TESTS = Path(__file__).resolve().parent
FIRMWARE = TESTS.parent / "firmware"
VECTORS = json.loads((TESTS / "protocol_vectors.json").read_text())
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected(v):
    """What run() must print for these vectors, written out from the vectors themselves."""
    frames = []
    for f in v["frames"]:
        built = dict.fromkeys(["encode", "writer_copy", "writer_prefix", "writer_in_place", "writer_exact"], f["frame"])
        built["decoded"] = [[f["ftype"], f["seq"], f["t_us"], f["payload"]]]
        frames.append(built)
    reader = []
    for r in v["reader"]:
        want = {"results": r["results"], "counters": r["counters"]}
        reader.append({"as_given": want, "byte_by_byte": want})
    decoder = []
    for d in v["decoder"]:
        want = {k: d[k] for k in ("frames", "counters", "text", "peer_version")}
        taking = {k: want[k] for k in ("frames", "counters", "peer_version")}
        decoder.append({"as_given": want, "joined": want, "byte_by_byte": want, "byte_by_byte_taking": taking})
    return {
        "constants": v["constants"],
        "frames": frames,
        "frame_errors": [True] * len(v["frame_errors"]),
        "writer_errors": [True] * 4,
        "commands": [c["line"] for c in v["commands"]],
        "command_errors": [True] * len(v["command_errors"]),
        "commands_read": [[[c["seq"], c["cmd"], [str(a) for a in c["args"]]]] for c in v["commands"]],
        "reader": reader,
        "decoder": decoder,
        "unwrap": [u["expected"] for u in v["unwrap"]],
        "ticks_masked": [True, True],
        "unwrap_ticks": [P.TICKS_PERIOD - 1, P.TICKS_PERIOD, P.TICKS_PERIOD + 7],
        "unwrap_seqs": [65535, 65536, 65538],
        "acks": [[a["payload"], a["cmd_seq"], a["code"], a["data"]] for a in v["acks"]],
        "ack_too_short": True,
        "acks_into": [a["payload"] for a in v["acks_into"]],
        "logs": [[g["payload"], [g["level"], g["text"]]] for g in v["logs"]],
        "log_empty": True,
        "logs_into": [g["payload"] for g in v["logs_into"]],
        "chunks": [[c["arg"], c["data"]] for c in v["chunks"]],
        "chunk_errors": [True] * len(v["chunk_errors"]),
        "chunk_too_big": True,
        "records": [[r["line"], r["end"]] for r in v["records"]],
        "record_errors": [True] * 3,
        "records_opened": [[r["n"]] + ([r["seq"], r["offset"], r["data"]] if r["n"] >= 0 else []) for r in v["records_opened"]],
        "records_counted": [len(v["records_opened"]), sum(r["n"] < 0 for r in v["records_opened"])],
    }


def assert_matches_vectors(out):
    want = expected(VECTORS)
    for key, value in want.items():
        if isinstance(value, list) and key in ("frames", "reader", "decoder"):
            names = [c.get("name", i) for i, c in enumerate(VECTORS[key])]
            for name, got, exp in zip(names, out[key], value):
                assert got == exp, f"{key} vector {name!r}"
            assert len(out[key]) == len(value)
        else:
            assert out[key] == value, key
    for code, (name, text) in out["error_names"].items():
        assert VECTORS["constants"][name] == int(code) and text.startswith(name + ": ")
    assert sorted(int(c) for c in out["error_names"]) == list(range(14))


@pytest.fixture(scope="module")
def cpython_out():
    return json.loads(json.dumps(runner.run(VECTORS, P)))  # same JSON round trip as the VM's output


@pytest.fixture(scope="module")
def micropython_out():
    return json.loads(run_micropython(str(TESTS / "mp_protocol_vectors.py"), sys_path=[FIRMWARE], timeout=60))


def test_vectors_cpython(cpython_out):
    assert_matches_vectors(cpython_out)


def test_vectors_micropython(micropython_out, cpython_out):
    assert_matches_vectors(micropython_out)
    assert micropython_out == cpython_out


ALLOCATION_PROBE = """
import gc, json, struct
import protocol as P

def allocated(f):
    f(); f()  # first calls may cut the memoryviews for a new length
    gc.collect(); gc.disable()
    before = gc.mem_alloc()
    for i in range(50):
        f()
    used = gc.mem_alloc() - before
    gc.enable()
    return used

w = P.FrameWriter(64)
view = w.payload_view()
clean = bytes(range(1, 41))
dirty = b'\\x7e\\x7d' * 20
r = P.CommandReader()
rx = bytearray(b'17 set_mode dir')

def in_place():
    struct.pack_into('<hhhhIIbb', view, 0, 1, -2, 3, -4, 123456, 7, -8, 9)
    w.pack(P.T_TELEMETRY, 65535, 1073741823, None, 20)

def in_place_escaped():
    struct.pack_into('<HHI', view, 0, 0x7e7d, 0x7d7e, 0x7e7e7e7e)
    w.pack(P.T_TELEMETRY, 0x7e7d, 0x3d7e7d7e, None, 8)

def lengths_alternate():
    w.pack(P.T_TELEMETRY, 1, 2, None, 20)
    w.pack(P.T_LOG, 1, 2, None, 21)

print(json.dumps({
    'in_place': allocated(in_place),
    'in_place_escaped': allocated(in_place_escaped),
    'copy_clean': allocated(lambda: w.pack(P.T_TELEMETRY, 3, 4, clean)),
    'copy_escaped': allocated(lambda: w.pack(P.T_TELEMETRY, 3, 4, dirty)),
    'reader_idle': allocated(lambda: r.feed(rx, 0)),
    'ack_without_data': allocated(lambda: P.ack_into(view, 65535, P.E_OK, b'')),
    'control_alternating_lengths': allocated(lengths_alternate),
}))
"""


def test_device_hot_paths_allocate_nothing_under_micropython():
    used = json.loads(run_micropython(ALLOCATION_PROBE, sys_path=[FIRMWARE]))
    assert used.pop("control_alternating_lengths") > 0, "the probe must be able to see an allocation"
    assert used == dict.fromkeys(used, 0)


def random_stream(rng, n_frames):
    """Frames with random damage and text between them; returns (stream, intact frames)."""
    stream, intact = b"", []
    for _ in range(n_frames):
        f = (rng.randrange(1, 16), rng.randrange(65536), rng.randrange(P.TICKS_PERIOD),
             bytes(rng.getrandbits(8) for _ in range(rng.randrange(60))))
        data = bytearray(P.encode_frame(*f))
        damage = rng.choice(["none", "none", "truncate", "flip", "text"])
        if damage == "truncate":
            data = data[:rng.randrange(len(data) - 1)]  # losing only the closing FLAG loses nothing
        elif damage == "flip":
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif damage == "text":
            stream += rng.choice([b"Traceback (most recent call last):\r\n", b">>> ", bytes(rng.getrandbits(8) for _ in range(20))])
        if damage in ("none", "text"):
            intact.append(f)
        stream += bytes(data)
    return stream, intact


def test_interpreters_agree_on_damaged_random_streams(tmp_path):
    rng = random.Random(7)
    streams, readers = [], []
    for _ in range(60):
        stream, _ = random_stream(rng, rng.randrange(1, 12))
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(3))
        streams.append([stream[a:b].hex() for a, b in zip([0] + cuts, cuts + [len(stream)])])
        lines = b"".join(P.encode_command(rng.randrange(1, 65536), "set", [str(rng.randrange(3000))]) for _ in range(5))
        lines = bytearray(lines)
        for _ in range(rng.randrange(4)):
            lines[rng.randrange(len(lines))] = rng.getrandbits(8)
        readers.append([bytes(lines).hex()])
    (tmp_path / "streams.json").write_text(json.dumps({"streams": streams, "readers": readers}))
    code = f"""
import json, binascii, protocol, mp_protocol_vectors as m
v = json.load(open({str(tmp_path / 'streams.json')!r}))
print(json.dumps([[m.decoded(protocol, [binascii.unhexlify(c) for c in s]) for s in v['streams']],
                  [m.read_commands(protocol, [binascii.unhexlify(c) for c in s]) for s in v['readers']]]))
"""
    vm = json.loads(run_micropython(code, sys_path=[FIRMWARE, TESTS], timeout=60))
    here = [[runner.decoded(P, [bytes.fromhex(c) for c in s]) for s in streams],
            [runner.read_commands(P, [bytes.fromhex(c) for c in s]) for s in readers]]
    assert vm == json.loads(json.dumps(here))


# ---- CPython fuzzing ------------------------------------------------------------------------

def reference_frame(ftype, seq, t_us, payload):
    """The spec read literally: header, payload, LE CRC-32, then byte-by-byte stuffing between FLAGs."""
    raw = bytes([P.PROTOCOL_VERSION << 4 | ftype]) + struct.pack("<HI", seq, t_us) + payload
    raw += struct.pack("<I", zlib.crc32(raw))
    body = b"".join(b"\x7d" + bytes([b ^ 0x20]) if b in (0x7D, 0x7E) else bytes([b]) for b in raw)
    return b"\x7e" + body + b"\x7e"


frame_args = st.tuples(st.integers(1, 15), st.integers(0, 65535), st.integers(0, P.TICKS_PERIOD - 1),
                       st.binary(max_size=120) | st.lists(st.sampled_from(b"\x7e\x7d\x00"), max_size=40).map(bytes))


def feed_in_pieces(decoder, stream, cuts):
    cuts = sorted(c % (len(stream) + 1) for c in cuts)
    frames = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        frames += decoder.feed(stream[a:b])
    return frames


def counters(d):
    return [d.frames, d.crc_errors, d.garbage, d.oversize, d.bad_escape, d.version_errors, d.short, d.peer_version]


@fuzz
@given(frame_args, st.integers(0, 200))
def test_frame_round_trip(f, max_payload_extra):
    frame = P.encode_frame(*f)
    assert frame == reference_frame(*f)
    w = P.FrameWriter(len(f[3]) + max_payload_extra)
    n = w.pack(*f)
    assert bytes(w.buf[:n]) == frame
    assert P.FrameDecoder().feed(frame) == [f]


@fuzz
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_decoder_never_raises_and_ignores_chunking(data, cuts):
    whole = P.FrameDecoder()
    frames = whole.feed(data)
    pieces = P.FrameDecoder()
    assert feed_in_pieces(pieces, data, cuts) == frames
    assert whole.take_text() == pieces.take_text()
    assert counters(whole) == counters(pieces)
    assert whole.garbage <= len(data)


@fuzz
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.lists(st.integers(0, 10**6), max_size=6))
def test_decoder_recovers_every_intact_frame(seed, n_frames, cuts):
    stream, intact = random_stream(random.Random(seed), n_frames)
    d = P.FrameDecoder()
    assert feed_in_pieces(d, stream, cuts) == intact
    assert d.frames == len(intact)


@fuzz
@given(st.lists(st.integers(1, P.TICKS_PERIOD - 1), max_size=30), st.integers(0, P.TICKS_PERIOD - 1),
       st.sampled_from([P.TICKS_PERIOD, 1 << 16]))
def test_unwrap_gives_back_the_true_count(steps, start, period):
    steps = [s % period or 1 for s in steps]
    truth = [start % period]
    for s in steps:
        truth.append(truth[-1] + s)
    u = P.Unwrapper(period)
    assert [u(t % period) for t in truth] == truth


token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
command_args = st.tuples(st.integers(1, 65535), st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
                         st.lists(token, max_size=8))


@fuzz
@given(command_args, st.lists(st.integers(0, 300), max_size=5))
def test_command_round_trip(c, cuts):
    line = P.encode_command(*c)
    assert len(line) <= P.MAX_LINE and all(0x20 <= b <= 0x7E for b in line[:-1]) and line.endswith(b"\n")
    r = P.CommandReader()
    got = []
    for piece in (line[a:b] for a, b in zip([0] + sorted(cuts), sorted(cuts) + [len(line)])):
        got += r.feed(piece)
    assert got == [(c[0], c[1], list(c[2]))]


@fuzz
@given(st.binary(max_size=600), command_args)
def test_command_reader_never_raises_and_resyncs(garbage, c):
    r = P.CommandReader()
    results = r.feed(garbage + b"\n") + r.feed(P.encode_command(*c))
    for seq, name, rest in results[:-1]:
        assert name is None and rest in (P.E_CRC, P.E_SYNTAX, P.E_TOO_BIG) and 0 <= seq <= 65535
    assert results[-1] == (c[0], c[1], list(c[2]))
    assert r.lines == len(results) == 1 + r.crc_errors + r.syntax_errors + r.overflows


@fuzz
@given(command_args, st.data())
def test_a_bit_flip_never_yields_a_command(c, data):
    line = bytearray(P.encode_command(*c))
    i = data.draw(st.integers(0, len(line) - 2))  # the newline itself is not part of the checked text
    line[i] ^= 1 << data.draw(st.integers(0, 7))
    results = P.CommandReader().feed(line)
    assert results and all(name is None for _, name, _ in results)


def test_bad_commands_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"seq must be an int in 1\.\.65535"):
        P.encode_command(0, "ping")
    with pytest.raises(ValueError, match=r"name must match \[a-z_\]\+"):
        P.encode_command(1, "Ping")
    with pytest.raises(ValueError, match="printable ASCII without spaces"):
        P.encode_command(1, "ping", ["a b"])
    with pytest.raises(ValueError, match="more than MAX_LINE=200"):
        P.encode_command(1, "chunk", ["A" * 190])
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        P.encode_frame(P.T_LOG, 0, 0, bytes(P.MAX_PAYLOAD + 1))


FRAGMENTED_HEAP_PROBE = """
import gc, json, binascii
import protocol as P

text = json.dumps({"key%d" % i: {"v": "x}~y" * 4, "n": i} for i in range(70)})  # ~3.7 KB, like the hello
out = bytearray(2 * len(text) + 64)
class Sink:  # fills a preallocated buffer: writing allocates nothing
    n = 0
    def write(self, b):
        out[self.n:self.n + len(b)] = b
        self.n += len(b)
sink = Sink()
blocks = []
try:  # fill the heap with small blocks, then free every other one: plenty free, nothing big
    while True:
        blocks.append(bytearray(400))
except MemoryError:
    pass
for i in range(0, len(blocks), 2):
    blocks[i] = None
gc.collect()
try:
    bytearray(len(text))
    big = "a block as big as the frame was still free: the probe did not fragment"
except MemoryError:
    big = None
try:
    P.write_frame(sink, 1, 2, 3, text)
    result = None
except MemoryError:
    result = "MemoryError"
blocks = None
gc.collect()
print(json.dumps({"text": text, "frame": result, "big": big}))
for i in range(0, sink.n, 128):  # the frame in small pieces: no big block needed to show it
    print(binascii.hexlify(out[i:min(i + 128, sink.n)]).decode())
"""


def test_a_big_frame_is_written_on_a_heap_with_no_block_its_size():
    """The hello (~3.5 KB of JSON) must go out on a fragmented ESP32 heap: write_frame streams it in pieces."""
    # 160 KB: protocol.py compiled from source peaks near 130 KB on the 64-bit VM (a board runs it as .mpy)
    first, *frame = run_micropython(FRAGMENTED_HEAP_PROBE, sys_path=[FIRMWARE], heap=160 * 1024).splitlines()
    out = json.loads(first)
    assert out["big"] is None, out["big"]
    assert out["frame"] is None, out["frame"]
    assert bytes.fromhex("".join(frame)) == reference_frame(1, 2, 3, out["text"].encode()) == P.encode_frame(1, 2, 3, out["text"])


# ---- the decoder against PROTOCOL.md "Decoding": each stretch alone, whatever the reads ----------

class PlainDecoder(P.FrameDecoder):
    """The decoder as MicroPython runs it (stretch by stretch, in Python): the host's bulk path must match it."""
    feed = P.FrameDecoder._feed_plain
    _middle = P.FrameDecoder._middle_plain


def forge_tail(prefix, target):
    """4 bytes x with crc32(prefix + x) == target: CRC-32 is affine in x, solved over GF(2)."""
    base = zlib.crc32(prefix + bytes(4))
    basis = {}  # leading bit -> (image, combination of unit vectors)
    for i in range(32):
        v, comb = zlib.crc32(prefix + (1 << i).to_bytes(4, "little")) ^ base, 1 << i
        for bit in range(31, -1, -1):
            if v >> bit & 1:
                if bit not in basis:
                    basis[bit] = (v, comb)
                    break
                v, comb = v ^ basis[bit][0], comb ^ basis[bit][1]
    want, x = target ^ base, 0
    for bit in range(31, -1, -1):
        if want >> bit & 1:
            want, x = want ^ basis[bit][0], x ^ basis[bit][1]
    return x.to_bytes(4, "little")


def raw_frame(byte0, seq, t_us, payload):
    raw = struct.pack("<BHI", byte0, seq, t_us) + payload
    return raw + struct.pack("<I", zlib.crc32(raw))


def stuffed(raw):
    return b"\x7e" + raw.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e") + b"\x7e"


def colluding_pair(rng, size):
    """Two damaged frames of one size whose errors cancel in a CRC over both: each fails its own CRC."""
    a = raw_frame(0x12, rng.randrange(65536), rng.randrange(P.TICKS_PERIOD), rng.randbytes(size))
    b = raw_frame(0x12, rng.randrange(65536), rng.randrange(P.TICKS_PERIOD), rng.randbytes(size))
    target = zlib.crc32(a + b)
    a = bytearray(a)
    a[rng.randrange(1, len(a))] ^= 1 << rng.randrange(8)  # byte0 kept: both still carry our version nibble
    b = b[:-4] + forge_tail(bytes(a) + b[:-4], target)
    assert zlib.crc32(bytes(a) + b) == target
    return bytes(a), b


def test_two_damaged_frames_whose_errors_cancel_are_both_refused():
    rng = random.Random(5)
    for trial in range(50):
        a, b = colluding_pair(rng, rng.choice([0, 20, 34, 100]))
        good = (2, 9, 9, b"ok")
        stream = stuffed(a) + stuffed(b) + P.encode_frame(*good)
        for d in (P.FrameDecoder(), PlainDecoder()):
            assert d.feed(stream) == [good], trial
            assert (d.frames, d.crc_errors) == (1, 2)
            runs = P.FrameDecoder().feed_runs(stream)
            assert [(size, bytes(run)) for size, run in runs] == [(13, raw_frame(0x12, 9, 9, b"ok"))]


def test_opening_the_port_mid_frame_is_no_damage():
    """The host opens the port (or a session starts) wherever the board is in its stream: the partial
    frame before the first FLAG is synchronisation, counted in partial_start, not a CRC error."""
    rng = random.Random(2)
    frames = [(P.T_TELEMETRY, i, 10000 * i, rng.randbytes(34)) for i in range(6)]
    encoded = [P.encode_frame(*f) for f in frames]
    stream = b"".join(encoded)
    for cut in range(len(encoded[0]) + len(encoded[1]) + 1):
        whole_after = [f for f, at in zip(frames, itertools.accumulate([0] + [len(e) for e in encoded]))
                       if at >= cut - 1]  # a frame cut just after its opening FLAG still arrives whole
        for d in (P.FrameDecoder(), PlainDecoder()):
            got = []
            for a in range(cut, len(stream), 7):  # reads of 7 bytes, so cuts fall everywhere
                got += d.feed(stream[a:a + 7])
            assert got == whole_after, cut
            assert d.crc_errors == d.short == d.bad_escape == d.oversize == 0, (cut, counters(d))
            assert d.partial_start + (d.garbage > 0) <= 1  # the one partial frame: synchronisation or text


def decoder_stream(rng, n):
    """A stream the way a board and a cable make it: runs of equal-size frames, some damaged, frames of
    another version, colluding pairs, text, stray FLAGs, maybe starting inside a frame."""
    out = []
    size = rng.choice([0, 20, 34])
    for _ in range(n):
        kind = rng.choice(["frame"] * 6 + ["flip", "cut", "version", "pair", "text", "flags", "big"])
        if rng.random() < 0.2:
            size = rng.choice([0, 1, 20, 34, 200])
        payload = bytes(rng.choice([0x7E, 0x7D, rng.randrange(256)]) for _ in range(size))
        frame = P.encode_frame(rng.choice([2, 2, 2, 3, 4]), rng.randrange(65536), rng.randrange(P.TICKS_PERIOD), payload)
        if kind == "frame":
            out.append(frame)
        elif kind == "flip":
            f = bytearray(frame)
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            out.append(bytes(f))
        elif kind == "cut":
            out.append(frame[:rng.randrange(1, len(frame))])
        elif kind == "version":
            out.append(stuffed(raw_frame(rng.choice([0x02, 0x22, 0x35]), 1, 2, payload)))
        elif kind == "pair":
            out.extend(stuffed(r) for r in colluding_pair(rng, size))
        elif kind == "text":
            out.append(rng.choice([b"Traceback (most recent call last):\r\n", b">>> ", b"\x12abc", rng.randbytes(30)]))
        elif kind == "flags":
            out.append(b"\x7e" * rng.randrange(1, 4))
        else:
            out.append(rng.choice([b"\x12", b"x"]) + bytes(rng.randrange(8000, 9000)))
    stream = b"".join(out)
    return stream[rng.choice([0, 0, rng.randrange(len(stream) + 1)]):]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.lists(st.integers(0, 10**6), max_size=12), st.booleans())
def test_frames_and_counters_do_not_depend_on_read_splits(seed, n, cuts, taking):
    """The same frames, counters (and text) whatever the read boundaries, whether take_text() is called
    after every read (as the link does) or not, bulk (CPython) or stretch by stretch (MicroPython)."""
    stream = decoder_stream(random.Random(seed), n)
    reference = PlainDecoder()
    want = reference.feed(stream)
    want_text = reference.take_text()
    for d in (P.FrameDecoder(), PlainDecoder()):
        cut = sorted(c % (len(stream) + 1) for c in cuts)
        got, text = [], b""
        for a, b in zip([0] + cut, cut + [len(stream)]):
            got += d.feed(stream[a:b])
            if taking:
                text = (text + d.take_text())[-4096:]
        assert got == want
        assert counters(d) + [d.partial_start] == counters(reference) + [reference.partial_start]
        if not taking:
            assert d.take_text() == want_text
    runs = P.FrameDecoder().feed_runs(stream)
    assert [(len(f[3]) + P.OVERHEAD, f[:3]) for f in want] == \
        [(size, (run[o] & 15,) + struct.unpack_from("<HI", run, o + 1)) for size, run in runs for o in range(0, len(run), size)]


# ---- transfer records (PROTOCOL.md "Records") ------------------------------------------------

record_data = st.binary(min_size=1, max_size=700) | st.lists(st.sampled_from(b"\x01\x02\x03\x04\x05\x0a\x10\x00\x7e"),
                                                            min_size=1, max_size=400).map(bytes)


@fuzz
@given(record_data, st.integers(1, 65535))
def test_records_carry_any_bytes_and_never_a_control_byte(data, seq):
    """Cut into records from offset 0, opened as the board opens them: the same bytes back, each line at most
    MAX_LINE with no 0x01-0x05 (the REPL's) and no newline before its end."""
    got, start = bytearray(), 0
    while start < len(data):
        line, end = P.encode_record(seq, data, start)
        assert start < end and len(line) <= P.MAX_LINE and line[0] == P.RECORD and line.endswith(b"\n")
        assert not any(b in line[:-1] for b in b"\x01\x02\x03\x04\x05\x0a")
        r = P.CommandReader()
        buf = bytearray(line[:-1])
        n = r.open_record(buf, len(buf))
        assert (n, r.record[0], r.record[1]) == (end - start, seq, start)
        got += buf[P.REC_HEAD:P.REC_HEAD + n]
        start = end
    assert got == data


@fuzz
@given(record_data, st.data())
def test_a_damaged_record_never_opens(data, draw):
    """A flipped bit or a dropped byte (a full stdin ring) anywhere after the mark: refused, counted."""
    line = bytearray(P.encode_record(1, data, 0)[0][:-1])
    i = draw.draw(st.integers(1, len(line) - 1))
    if draw.draw(st.booleans()):
        line[i] ^= 1 << draw.draw(st.integers(0, 7))
    else:
        del line[i]
    r = P.CommandReader()
    assert r.open_record(line, len(line)) == -1 and (r.lines, r.crc_errors) == (1, 1)
