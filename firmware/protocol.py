"""Polyniod wire protocol, one module for the firmware (MicroPython) and the host (CPython).

Device -> host: binary frames, byte-stuffed between FLAGs, CRC-checked. Host -> device:
printable text lines that never contain the REPL's control bytes. Spec: PROTOCOL.md.
"""
import array
import binascii
import struct

try:
    from micropython import const

    import emit

    _HOST = False
except ImportError:  # CPython
    from . import emit

    _HOST = True  # the host: FrameDecoder's bulk paths (after the class)

    def const(x):
        return x

PROTOCOL_VERSION = const(1)

FLAG = const(0x7E)  # delimits frames, never inside one
ESC = const(0x7D)  # 0x7E -> 0x7D 0x5E, 0x7D -> 0x7D 0x5D

T_HELLO = const(1)  # UTF-8 JSON: firmware, board, robot, telemetry schema
T_TELEMETRY = const(2)  # packed by the schema the hello announced
T_ACK = const(3)  # u16 LE command seq, u8 code, optional data (usually UTF-8 JSON)
T_LOG = const(4)  # u8 level, UTF-8 text

LOG_DEBUG = const(0)
LOG_INFO = const(1)
LOG_WARN = const(2)
LOG_ERROR = const(3)

E_OK = const(0)
E_CRC = const(1)
E_SYNTAX = const(2)
E_UNKNOWN = const(3)
E_ARG = const(4)
E_STATE = const(5)
E_TOO_BIG = const(6)
E_OFFSET = const(7)
E_CHECK = const(8)
E_IO = const(9)
E_BUSY = const(10)
E_RANGE = const(11)
E_VERSION = const(12)
E_NO_TRAJ = const(13)

ERROR_NAMES = {
    0: "E_OK", 1: "E_CRC", 2: "E_SYNTAX", 3: "E_UNKNOWN", 4: "E_ARG", 5: "E_STATE", 6: "E_TOO_BIG",
    7: "E_OFFSET", 8: "E_CHECK", 9: "E_IO", 10: "E_BUSY", 11: "E_RANGE", 12: "E_VERSION", 13: "E_NO_TRAJ",
}
ERROR_MEANINGS = {
    0: "done",
    1: "the command line failed its check (corrupted on the wire): resend it",
    2: "the command line is malformed",
    3: "unknown command",
    4: "bad or missing argument",
    5: "not allowed in the current mode",
    6: "too big (line, payload or model does not fit)",
    7: "chunk out of order (unexpected offset)",
    8: "transfer CRC or size mismatch",
    9: "device storage or peripheral I/O failed",
    10: "busy, try again",
    11: "value out of the configured range",
    12: "incompatible version (protocol or blob format)",
    13: "no trajectory sent: `track traj` follows the one sent into xfer slot traj (gone after a restart)",
}


class Refused(Exception):
    """A command the board will not (or cannot) carry out: the ack's code (machine-readable, what the
    host matches) and why (one line for people)."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code

MAX_FRAME = const(4096)  # bytes of header + payload + crc, before stuffing
MAX_LINE = const(200)  # bytes of a command line including its newline (ESP32 stdin ring: 260)
CHUNK = const(96)  # raw bytes per chunk line (128 base64 characters)
RX_RING = const(260)  # the ESP32's stdin ring: what overflows it is dropped
RECORD = const(0x23)  # '#' first on a line: a binary transfer record, not a command (PROTOCOL.md "Records")
REC_ESC = const(0x10)  # escapes the record bytes the link must not carry: 0x01-0x05, 0x0A, itself
REC_HEAD = const(6)  # a record's seq u16 LE and offset u32 LE, before its data
REC_MIN = const(10)  # head + crc32
TICKS_PERIOD = const(1 << 30)  # time.ticks_us() wraps here on the ESP32
_COUNT_MASK = const(0x3FFFFFFF)  # the reader's counters wrap at 2**30: small ints on the ESP32

HEADER_SIZE = const(7)  # byte0 (version << 4 | type), seq u16 LE, t_us u32 LE
OVERHEAD = const(11)  # header + crc32
MAX_PAYLOAD = MAX_FRAME - OVERHEAD

_HEADER = "<BHI"
_V4 = const(PROTOCOL_VERSION << 4)
_TICKS_MASK = const((1 << 30) - 1)
_MAX_STUFFED = 2 * MAX_FRAME
_TEXT_KEEP = 4096
_RESIDUE = 0x2144DF1C  # crc32 of any frame body followed by its own LE crc32
_FLAG_B = b"\x7e"
_ESC_B = b"\x7d"
_ESC_FLAG = b"\x7d\x5e"
_ESC_ESC = b"\x7d\x5d"
_BUFFER = const(0)  # decoder modes: collecting a part until the next FLAG,
_TEXT = const(1)  # streaming a part to the text buffer,
_SKIP = const(2)  # dropping an oversized frame.


def encode_frame(ftype, seq, t_us, payload):
    """One complete stuffed frame as bytes (the host's and the tests' way to make one)."""
    import io

    out = io.BytesIO()
    write_frame(out, ftype, seq, t_us, payload)
    return out.getvalue()


def write_frame(out, ftype, seq, t_us, payload):
    """Write one stuffed frame to the stream `out` piece by piece, never copying the payload whole.

    For the rare big frame (the hello, ~3.5 KB of JSON): on an ESP32 a fragmented heap may hold no
    second block that size. payload: bytes, bytearray or str (its UTF-8 bytes). The hot path uses
    FrameWriter instead, which allocates nothing."""
    if not 1 <= ftype <= 15:
        raise ValueError("frame type must be 1..15, got %r" % (ftype,))
    if isinstance(payload, str) and not _ascii_buffer(payload):
        payload = payload.encode()
    if len(memoryview(payload)) > MAX_PAYLOAD:
        raise ValueError("frame payload is %d bytes, more than MAX_PAYLOAD=%d" % (len(payload), MAX_PAYLOAD))
    head = struct.pack(_HEADER, _V4 | ftype, seq & 0xFFFF, t_us & _TICKS_MASK)
    crc = binascii.crc32(payload, binascii.crc32(head))
    out.write(_FLAG_B)
    _write_stuffed(out, head)
    _write_stuffed(out, payload)
    _write_stuffed(out, struct.pack("<I", crc))
    out.write(_FLAG_B)


def _ascii_buffer(text):
    """True when the str can be framed as it is: MicroPython lends a str's bytes, and ASCII keeps
    character and byte positions equal. CPython lends no str: encode it."""
    try:
        return len(text) == len(memoryview(text))
    except TypeError:
        return False


def _write_stuffed(out, data):
    """data with FLAG and ESC escaped, written as the runs between them (found by C-speed find)."""
    flag, esc = ("~", "}") if isinstance(data, str) else (_FLAG_B, _ESC_B)
    view = memoryview(data)
    n = len(data)
    at = 0
    while at < n:
        f, e = data.find(flag, at), data.find(esc, at)
        stop = n if f < 0 and e < 0 else f if e < 0 or 0 <= f < e else e
        if stop > at:
            out.write(view[at:stop])
        if stop == n:
            return
        out.write(_ESC_FLAG if stop == f else _ESC_ESC)
        at = stop + 1


# The frame CRC without a big int: binascii.crc32 returns up to 2**32, which an ESP32 (31-bit
# small ints) allocates for every frame. Under viper the CRC register is a machine word and the
# four CRC bytes go straight after the body. Elsewhere (CPython, a build without viper) binascii.
CRC_KERNEL = """
def crc_into(buf, n: int, table):
    b = ptr8(buf)
    t = ptr32(table)
    c = -1
    i = 0
    while i < n:
        c = t[(c ^ b[i]) & 0xFF] ^ ((c >> 8) & 0xFFFFFF)
        i += 1
    c = ~c
    b[n] = c & 0xFF
    b[n + 1] = (c >> 8) & 0xFF
    b[n + 2] = (c >> 16) & 0xFF
    b[n + 3] = (c >> 24) & 0xFF
"""
_crc_into = emit.under("@micropython.viper", CRC_KERNEL, "crc_into")
_CRC_TABLE = array.array("I", bytes(1024))  # also the command reader's (plain_line below)
for _k in range(len(_CRC_TABLE)):  # the CRC register after byte k from 0 (binascii.crc32 inverts it in and out)
    _CRC_TABLE[_k] = binascii.crc32(bytes((_k,)), 0xFFFFFFFF) ^ 0xFFFFFFFF

# A plain command line `<seq> <name>[ <int>]* <crc>` checked and parsed in place, allocation-free
# (CommandReader.take: the `set` stream of direct mode). Everything but this shape returns -1 and goes
# the general way (CommandReader.finish), so the kernel only has to be right about what it accepts:
# seq 1..65535 without a leading zero, name [a-z_]+, each int -?[0-9]{1,9} (inside the 31-bit small
# ints), at most PLAIN_MAX_ARGS of them, then the 8 lower-case hex digits of the line's CRC-32, checked
# against the CRC computed here (a machine word under viper: no big int). Writes out[0] = seq,
# out[1], out[2] = where the name starts and ends, out[3:] = the ints; returns how many ints.
# Compiled by viper where the build has it, else run as the same plain Python (CPython, the host's tests).
# The CRC-32 of b[0:n] into c, a machine word (t: the table), as the kernels below inline it: viper
# calls cost more than the loop. `CRC_LOOP % "n"` names the length.
CRC_LOOP = """
    c = -1
    i = 0
    while i < %s:
        c = t[(c ^ b[i]) & 0xFF] ^ ((c >> 8) & 0xFFFFFF)
        i += 1
    c = ~c
"""[1:]
PLAIN_MAX_ARGS = const(8)
PLAIN_KERNEL = """
def plain_line(buf, k: int, out, table) -> int:
    b = ptr8(buf)
    o = ptr32(out)
    t = ptr32(table)
    sp = k - 9
    if sp < 3 or b[sp] != 32:
        return -1
    ch = b[0]
    if ch < 49 or ch > 57:
        return -1
    v = ch - 48
    i = 1
    while i < sp:
        ch = b[i]
        if ch == 32:
            break
        if ch < 48 or ch > 57 or i >= 5:
            return -1
        v = v * 10 + ch - 48
        i += 1
    if v > 65535 or i >= sp:
        return -1
    o[0] = v
    i += 1
    o[1] = i
    while i < sp:
        ch = b[i]
        if ch == 32:
            break
        if ch != 95 and (ch < 97 or ch > 122):
            return -1
        i += 1
    if i == o[1]:
        return -1
    o[2] = i
    n = 0
    while i < sp:
        i += 1
        if n >= 8:
            return -1
        neg = 0
        if i < sp and b[i] == 45:
            neg = 1
            i += 1
        start = i
        v = 0
        while i < sp:
            ch = b[i]
            if ch == 32:
                break
            if ch < 48 or ch > 57 or i - start >= 9:
                return -1
            v = v * 10 + ch - 48
            i += 1
        if i == start:
            return -1
        if neg:
            v = 0 - v
        o[3 + n] = v
        n += 1
""" + CRC_LOOP % "sp" + """    i = 0
    while i < 8:
        d = (c >> (28 - 4 * i)) & 15
        if d < 10:
            d += 48
        else:
            d += 87
        if b[sp + 1 + i] != d:
            return -1
        i += 1
    return n
"""


# Received bytes into the reader's line without the slice a `line[k:k + n] = data[i:i + n]` allocates:
# dst[k:k + n] = src[i:i + n] with span = i << 8 | n (n < 256: a line is shorter). Elsewhere that slice.
COPY_KERNEL = """
def copy_into(dst, k: int, src, span: int):
    d = ptr8(dst)
    s = ptr8(src)
    i = span >> 8
    e = i + (span & 0xFF)
    while i < e:
        d[k] = s[i]
        k += 1
        i += 1
"""


# A transfer record (PROTOCOL.md "Records") opened in place: line[1:k] unescaped into line[0:], then
# crc32 of everything but the last 4 bytes checked against them (LE). Returns the unescaped length less
# the CRC, or -1 (a bad escape, too short, the CRC does not match). A machine-word CRC under viper:
# no big int on the ESP32. Elsewhere the same plain Python.
RECORD_KERNEL = """
def open_record(buf, k: int, table) -> int:
    b = ptr8(buf)
    t = ptr32(table)
    i = 1
    m = 0
    while i < k:
        ch = b[i]
        if ch == 0x10:
            i += 1
            if i >= k:
                return -1
            ch = b[i] ^ 0x20
            if ch != 0x10 and ch != 0x0A and (ch < 1 or ch > 5):
                return -1
        b[m] = ch
        m += 1
        i += 1
    if m < 10:
        return -1
    m -= 4
""" + CRC_LOOP % "m" + """    i = 0
    while i < 4:
        if b[m + i] != (c >> (8 * i)) & 0xFF:
            return -1
        i += 1
    return m
"""


_plain_line = (emit.under("@micropython.viper", PLAIN_KERNEL, "plain_line")
               or emit.build(PLAIN_KERNEL, "plain_line", {"ptr8": emit.same, "ptr32": emit.same}))
_copy_into = emit.under("@micropython.viper", COPY_KERNEL, "copy_into")
_open_record = (emit.under("@micropython.viper", RECORD_KERNEL, "open_record")
                or emit.build(RECORD_KERNEL, "open_record", {"ptr8": emit.same, "ptr32": emit.same}))
del CRC_LOOP, PLAIN_KERNEL, COPY_KERNEL, RECORD_KERNEL  # ~3 KB of text the board need not keep


def copy(dst, k, src, i, n):
    """dst[k:k + n] = src[i:i + n], allocation-free where viper copies (n < 256: a line's bytes)."""
    if _copy_into and n < 256:
        _copy_into(dst, k, src, i << 8 | n)
    else:
        dst[k:k + n] = src[i:i + n]


class FrameWriter:
    """Builds frames into preallocated buffers so the device's telemetry tick allocates nothing.

    Fill payload_view() in place (struct.pack_into) and call pack(..., None, n), or pass a payload
    to copy. Then write `buf[:returned n]`, e.g. sys.stdout.buffer.write(w.buf, n).
    """

    def __init__(self, max_payload):
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError("max_payload must be 0..%d, got %r" % (MAX_PAYLOAD, max_payload))
        self.max_payload = max_payload
        self.raw = bytearray(OVERHEAD + max_payload)
        self._raw_mv = memoryview(self.raw)
        self.buf = bytearray(2 + 2 * len(self.raw))  # worst case: every byte escaped
        self.buf[0] = FLAG
        self._buf_mv = memoryview(self.buf)
        self._payload = self._raw_mv[HEADER_SIZE:HEADER_SIZE + max_payload]
        self._views_for = -1  # the payload length self._body/_whole were cut for
        self._body = None
        self._whole = None

    def payload_view(self):
        """Writable memoryview of the payload area, for struct.pack_into without temporaries."""
        return self._payload

    def pack(self, ftype, seq, t_us, payload=None, n=None):
        """Frame the first n payload bytes (payload, or what is already in payload_view()); returns the byte count in buf."""
        if payload is not None:
            if n is None:
                n = len(payload)
            if not 0 <= n <= len(payload) or n > self.max_payload:
                raise ValueError("payload of %d bytes does not fit max_payload=%d" % (n, self.max_payload))
            self._raw_mv[HEADER_SIZE:HEADER_SIZE + n] = payload if len(payload) == n else memoryview(payload)[:n]
        elif n is None or not 0 <= n <= self.max_payload:
            raise ValueError("pack(..., None, n) needs 0 <= n <= max_payload=%d, got %r" % (self.max_payload, n))
        m = HEADER_SIZE + n
        if n != self._views_for:  # memoryview slices allocate, so keep the ones for this length
            self._views_for = n
            self._body = self._raw_mv[:m]
            self._whole = self._raw_mv[:m + 4]
        raw = self.raw
        struct.pack_into(_HEADER, raw, 0, _V4 | (ftype & 15), seq & 0xFFFF, t_us & _TICKS_MASK)
        if _crc_into:
            _crc_into(raw, m, _CRC_TABLE)
        else:
            struct.pack_into("<I", raw, m, binascii.crc32(self._body))
        m += 4
        buf = self.buf
        self._buf_mv[1:1 + m] = self._whole  # right whenever nothing needs escaping
        i = raw.find(b"\x7e", 0, m)
        j = raw.find(b"\x7d", 0, m)
        if i < 0 and j < 0:
            buf[m + 1] = FLAG
            return m + 2
        if i < 0 or 0 <= j < i:
            i = j
        k = 1 + i  # bytes before the first special one are already in place
        for i in range(i, m):
            b = raw[i]
            if b == FLAG or b == ESC:
                buf[k] = ESC
                k += 1
                b ^= 0x20
            buf[k] = b
            k += 1
        buf[k] = FLAG
        return k + 1


class FrameDecoder:
    """Splits the device's byte stream into frames; counts and skips everything else, never raises.

    feed() returns [(ftype, seq, t_us, payload)] for each intact frame of our version. Every stretch
    between two FLAGs stands alone (PROTOCOL.md "Decoding"): a frame on its own CRC, and what fails
    counts as a damaged frame when its first byte carries our version nibble, otherwise as text
    (REPL output, tracebacks), kept for take_text(). The stretch before the stream's first FLAG is
    where the port was opened: one that fails counts in partial_start, not as damage. Frames,
    counters and text do not depend on how reads split the stream, nor on when take_text() is called.
    feed_runs() returns the same frames unparsed, in bulk, for loading stored sessions fast.
    """

    def __init__(self):
        self.frames = 0
        self.crc_errors = 0
        self.garbage = 0  # bytes of text / noise outside frames
        self.oversize = 0
        self.bad_escape = 0
        self.version_errors = 0  # intact frames of another protocol version
        self.peer_version = None  # the version those frames carried
        self.short = 0
        self.partial_start = 0  # 1 when the stream began inside a frame (the port opened mid-frame)
        self._synced = False  # a FLAG has been seen
        self._tail = bytearray()  # bytes after the last FLAG
        self._shown = 0  # how many of them take_text() has handed out already (an unfinished text stretch)
        self._mode = _BUFFER
        self._text = bytearray()

    def _feed_plain(self, data):
        """Frames completed by these bytes; partial ones wait for the next call."""
        out = []
        for size, run in self.feed_runs(data):
            for o in range(0, len(run), size):
                byte0, seq, t_us = struct.unpack_from(_HEADER, run, o)
                out.append((byte0 & 15, seq, t_us, run[o + HEADER_SIZE:o + size - 4]))
        return out

    feed = _feed_plain  # the host's is _feed_bulk (below): the same frames, unpacked at C speed

    def feed_runs(self, data):
        """feed()'s frames unstuffed and checked but not unpacked: [(size, run)], in stream order, where
        run holds len(run) // size consecutive frames (header, payload, crc32) of `size` bytes each."""
        out = []
        parts = bytes(data).split(_FLAG_B)  # the stretches between FLAGs, in one C call
        last = parts.pop()  # after the last FLAG: unfinished, kept for the next call
        if parts:
            first = parts[0]  # ends the stretch the last call left unfinished
            parts[0] = b""
            if self._mode == _BUFFER:
                shown = self._shown
                if self._tail:
                    first = bytes(self._tail) + first
                    self._tail = bytearray()
                    self._shown = 0
                if first:
                    raw = self._check(first, shown)
                    if raw is not None:
                        out.append((len(raw), raw))
            elif self._mode == _TEXT and first:
                self._keep_text(first)
            self._mode = _BUFFER
            self._synced = True
            if len(parts) > 1:
                self._middle(parts, out)
        if last:
            self._grow(last)
        return out

    def take_text(self):
        """Text received outside frames since the last call (the newest 4 KB), as bytes.

        An unfinished stretch that does not start like one of our frames is handed out as it comes,
        so a crash report shows without waiting for a FLAG; it is counted (garbage) once it ends, as
        text -- or not, when it ends as an intact frame of another version."""
        text = self._text
        tail = self._tail
        if self._mode == _BUFFER and len(tail) > self._shown and tail[0] & 0xF0 != _V4:
            text += tail[self._shown:]
            self._shown = len(tail)
        if not text:  # the usual call: nothing to hand out, nothing to allocate
            return b""
        self._text = bytearray()
        return bytes(text[-_TEXT_KEEP:])

    def _grow(self, chunk):
        if not chunk or self._mode == _SKIP:
            return
        if self._mode == _TEXT:
            self._keep_text(chunk)
            return
        self._tail += chunk
        if len(self._tail) > _MAX_STUFFED:  # no frame is this long: decided now, as _check would
            if self._tail[0] & 0xF0 == _V4:
                if not self._damaged():
                    self.oversize += 1
                self._mode = _SKIP
            else:
                self._mode = _TEXT
                self._keep_text(self._tail, self._shown)
            self._tail = bytearray()
            self._shown = 0

    def _middle_plain(self, parts, out):
        """The stretches between a chunk's first and last FLAG (parts, empty ones included), each checked
        alone; the intact frames go out in runs of one size."""
        size = run = None
        for part in parts:
            if part:
                raw = self._check(part)
                if raw is None:
                    continue
                if len(raw) == size:
                    run += raw
                    continue
                if run is not None:
                    out.append((size, bytes(run)))
                size, run = len(raw), bytearray(raw)
        if run is not None:
            out.append((size, bytes(run)))

    _middle = _middle_plain  # the host's is _middle_bulk (below): the same checks, at C speed

    def _check(self, part, shown=0):
        """A stretch between FLAGs (stuffed, non-empty): its frame (header, payload, crc) when it is
        intact and of our version, else None, counted as PROTOCOL.md "Decoding" says, in that order.
        shown: how many of its first bytes take_text() handed out already."""
        raw = None
        if len(part) <= _MAX_STUFFED:
            raw = _unstuff(part) if ESC in part else part
            if raw is not None and OVERHEAD <= len(raw) <= MAX_FRAME and binascii.crc32(raw) == _RESIDUE:
                if raw[0] & 0xF0 == _V4:
                    self.frames += 1
                    return raw
                self.version_errors += 1
                self.peer_version = raw[0] >> 4
                return None
        if part[0] & 0xF0 != _V4:
            self._keep_text(part, shown)
        elif self._damaged():
            pass
        elif len(part) > _MAX_STUFFED:
            self.oversize += 1
        elif raw is None:
            self.bad_escape += 1
        elif len(raw) < OVERHEAD:
            self.short += 1
        elif len(raw) > MAX_FRAME:
            self.oversize += 1
        else:
            self.crc_errors += 1
        return None

    def _damaged(self):
        """A damaged frame: True when it is the stream's first stretch (the port opened inside a frame,
        which is no damage), counted in partial_start."""
        if self._synced:
            return False
        self.partial_start += 1
        return True

    def _keep_text(self, data, shown=0):
        self.garbage += len(data)
        self._text += data[shown:] if shown else data
        if len(self._text) > 2 * _TEXT_KEEP:
            self._text = self._text[-_TEXT_KEEP:]


def _unstuff(stuffed):
    """The bytes before stuffing, or None when an escape is malformed (each ESC must have consumed one byte)."""
    raw = stuffed.replace(b"\x7d\x5e", _FLAG_B).replace(b"\x7d\x5d", _ESC_B)
    return raw if len(stuffed) - len(raw) == stuffed.count(_ESC_B) else None


if _HOST:  # CPython: the same decoding, with the per-frame work done by C loops (map, bytes, struct)
    from itertools import groupby
    from operator import itemgetter

    _FIRST = itemgetter(0)
    _crc32 = binascii.crc32
    _TYPES = bytes(range(16)) * 16  # byte0 -> its frame type
    _SEQ_T = struct.Struct("<HI")
    _UNPACKERS = {}  # frame size -> iter_unpack of (type, seq, t_us, payload) frames of that size

    def _middle_bulk(self, parts, out):
        """_middle_plain's frames and counters: every stretch is still checked alone, on its own CRC, but
        in C. Anything short of all intact frames of our version goes to _middle_plain, which says what."""
        parts = list(filter(None, parts))
        if not parts:
            return
        stuffed = b"".join(parts)
        esc = stuffed.count(_ESC_B)
        raws, joined, sizes = parts, stuffed, list(map(len, parts))
        if esc:  # unstuff the stretches longer than the shortest: in a run of one size, those with escapes
            raws, shortest = parts[:], min(sizes)  # (a few in ten: a bytes call costs as much as a frame's CRC)
            for i, n in enumerate(sizes):
                if n > shortest:
                    raws[i] = raw = parts[i].replace(_ESC_FLAG, _FLAG_B).replace(_ESC_ESC, _ESC_B)
                    sizes[i] = len(raw)
            joined = b"".join(raws)
            # Each sound escape removes one byte, a malformed one none (as _unstuff), so the bytes removed in
            # all add up to the ESC count only when every stretch with escapes was unstuffed and all were sound.
            if len(stuffed) - len(joined) != esc:  # a shortest stretch had escapes too, or one is malformed
                raws = list(map(_unstuff, parts))
                if None in raws:
                    self._middle_plain(parts, out)
                    return
                joined, sizes = b"".join(raws), list(map(len, raws))
        size, n = min(sizes), len(raws)  # then every size, every CRC, every version nibble
        same = sizes.count(size) == n  # the usual chunk: frames of one size
        if (size >= OVERHEAD and (size if same else max(sizes)) <= MAX_FRAME
                and list(map(_crc32, raws)).count(_RESIDUE) == n):
            firsts = joined[::size] if same else bytes(map(_FIRST, raws))
            if min(firsts) >= _V4 and max(firsts) <= _V4 | 15:
                self.frames += n
                if same:
                    out.append((size, joined))
                else:
                    for size, run in groupby(raws, len):
                        out.append((size, b"".join(run)))
                return
        self._middle_plain(parts, out)

    def _feed_bulk(self, data):
        """Frames completed by these bytes; partial ones wait for the next call."""
        out = []
        for size, run in self.feed_runs(data):
            if len(run) == size:
                seq, t_us = _SEQ_T.unpack_from(run, 1)
                out.append((run[0] & 15, seq, t_us, run[HEADER_SIZE:-4]))
                continue
            unpack = _UNPACKERS.get(size)
            if unpack is None:
                unpack = _UNPACKERS[size] = struct.Struct("<BHI%ds4x" % (size - OVERHEAD)).iter_unpack
            run = bytearray(run)
            run[::size] = run[::size].translate(_TYPES)  # each frame's byte0 -> its type
            out += unpack(run)
        return out

    FrameDecoder._middle = _middle_bulk
    FrameDecoder.feed = _feed_bulk


def ack_into(buf, cmd_seq, code, data=b""):
    """Pack a T_ACK payload into buf (preallocated: the device's frame payload view) and return its
    length. Allocation-free for an answer without data, as the `set` stream's are. An answer longer
    than buf holds becomes E_TOO_BIG saying so (the device's acks have a fixed buffer)."""
    n = len(data)
    if 3 + n > len(buf):
        data = (b"the answer (%d bytes) does not fit an ack" % n)[:len(buf) - 3]
        code, n = E_TOO_BIG, len(data)
    struct.pack_into("<HB", buf, 0, cmd_seq, code)
    if n:
        buf[3:3 + n] = data
    return 3 + n


def ack_payload(cmd_seq, code, data=b""):
    """T_ACK payload as bytes: which command, how it went, optional data."""
    buf = bytearray(3 + len(data))  # room for all of it: never cut
    ack_into(buf, cmd_seq, code, data)
    return bytes(buf)


def parse_ack(payload):
    """(cmd_seq, code, data) of a T_ACK payload; ValueError when shorter than 3 bytes."""
    if len(payload) < 3:
        raise ValueError("ack payload is %d bytes, needs at least 3" % len(payload))
    cmd_seq, code = struct.unpack_from("<HB", payload)
    return cmd_seq, code, bytes(payload[3:])


def log_into(buf, level, text):
    """Pack a T_LOG payload (level byte, UTF-8 text) into buf and return its length; text longer than
    buf holds is cut and ends in "..."."""
    data = text.encode() if isinstance(text, str) else text
    if 1 + len(data) > len(buf):
        data = data[:len(buf) - 4] + b"..."
    buf[0] = level
    buf[1:1 + len(data)] = data
    return 1 + len(data)


def log_payload(level, text):
    """T_LOG payload as bytes: level byte then UTF-8 text."""
    data = text.encode()
    buf = bytearray(1 + len(data))
    log_into(buf, level, data)
    return bytes(buf)


def parse_log(payload):
    """(level, text) of a T_LOG payload; ValueError when empty."""
    if not payload:
        raise ValueError("log payload is empty, needs a level byte")
    return payload[0], bytes(payload[1:]).decode("utf-8", "replace")


def error_text(code):
    """'E_CRC: the command line failed its check ...' for messages; unknown codes say so."""
    return "%s: %s" % (ERROR_NAMES.get(code, "E_%d" % code), ERROR_MEANINGS.get(code, "unknown error code"))


def encode_command(seq, name, args=()):
    """One command line `<seq> <name>[ <arg>]* <crc>\\n` as bytes; ValueError says what is wrong."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= 65535:
        raise ValueError("command seq must be an int in 1..65535, got %r" % (seq,))
    if not isinstance(name, str) or not _is_name(name.encode()):
        raise ValueError("command name must match [a-z_]+, got %r" % (name,))
    tokens = [str(seq), name]
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool):
            arg = str(arg)
        if not isinstance(arg, str) or not arg or any(not 0x21 <= ord(c) <= 0x7E for c in arg):
            raise ValueError("command argument must be a non-empty str of printable ASCII without spaces, got %r" % (arg,))
        tokens.append(arg)
    body = " ".join(tokens)
    line = "%s %08x\n" % (body, binascii.crc32(body.encode()))
    if len(line) > MAX_LINE:
        raise ValueError("command line %r... is %d bytes, more than MAX_LINE=%d; send big data as CHUNK-sized chunks"
                         % (body[:40], len(line), MAX_LINE))
    return line.encode()


class CommandReader:
    """Reassembles command lines on the device from whatever stdin delivers; never raises.

    feed() returns a tuple with one item per completed line: (seq, name, args) for a good command,
    (seq_or_0, None, code) for a bad line to NACK: E_CRC when the line does not verify (corrupted:
    the host resends), E_SYNTAX when it verifies but is malformed (a host bug), E_TOO_BIG when it
    ran past MAX_LINE. The seq of a bad line is its leading number when that parses, else 0.
    Polling with n == 0 allocates nothing; bytes that arrive cost a copy, lines their parse.

    The device's loop uses feed_each() instead: each line as it completes, in the reader's own
    buffer, to take() (a plain line of ints, parsed in place: allocation-free) or finish() (the
    general way, feed()'s items).
    """

    def __init__(self):
        self._line = bytearray(MAX_LINE - 1)
        self._n = 0  # bytes of the current line kept
        self._over = False  # it ran past MAX_LINE
        self._got = None  # feed()'s items while it runs
        self._plain = array.array("i", bytes(4 * (3 + PLAIN_MAX_ARGS)))  # plain_line's out
        self.record = array.array("i", bytes(8))  # open_record's seq and offset
        self.lines = 0  # non-empty lines seen, good or bad
        self.crc_errors = 0
        self.syntax_errors = 0
        self.overflows = 0

    def feed(self, data, n=None):
        """Consume the first n bytes of data (bytes or bytearray; default all)."""
        self._got = None
        self.feed_each(data, n, None)
        got = self._got
        self._got = None
        return () if got is None else tuple(got)

    def feed_each(self, data, n, handle):
        """Consume the first n bytes of data, calling handle(line, k, over) for each line as it completes:
        line[:k] is its text (no newline) in the reader's buffer, valid during the call only; over: it
        ran past MAX_LINE (line holds its start). Empty lines are skipped. handle None: feed()'s items.
        Allocation-free itself."""
        if n is None or n > len(data):
            n = len(data)
        line = self._line
        k = self._n
        over = self._over
        i = 0
        while i < n:
            j = data.find(b"\n", i, n)
            end = n if j < 0 else j
            take = end - i
            if take > len(line) - k:
                take = len(line) - k
                over = True
            if take:
                if _copy_into:
                    _copy_into(line, k, data, i << 8 | take)
                else:
                    line[k:k + take] = data[i:i + take]
                k += take
            if j < 0:
                break
            i = j + 1
            if k or over:  # empty lines are ignored
                self._n = 0  # the line is out of the reader's hands before handle sees it
                self._over = False
                if handle is None:
                    if self._got is None:
                        self._got = []
                    self._got.append(self.finish(line, k, over))
                else:
                    handle(line, k, over)
            k = 0
            over = False
        self._n = k
        self._over = over

    def finish(self, line, k, over=False):
        """The general way: feed()'s item for the completed line line[:k], counted."""
        return self._finish(bytes(line[:k]), over)

    def take(self, line, k, name, into):
        """The seq of line[:k] when it is a plain `<seq> <name> <int>{len(into)} <crc>` (name: bytes, ints
        -?[0-9]{1,9}, see plain_line) that verifies, counted as a line, its ints written into `into`;
        else 0, nothing counted or written, for finish() to say what it is. What take() accepts,
        finish() gives as (seq, name, args) with [int(a) for a in args] == into. Allocation-free."""
        out = self._plain
        argc = len(into)
        if argc > PLAIN_MAX_ARGS or _plain_line(line, k, out, _CRC_TABLE) != argc:
            return 0
        at = out[1]
        if out[2] - at != len(name) or line.find(name, at, out[2]) != at:
            return 0
        for j in range(argc):
            into[j] = out[3 + j]
        self.lines = self.lines + 1 if self.lines < _COUNT_MASK else 0
        return out[0]

    def open_record(self, line, k):
        """The data length of the record line[:k] (its first byte RECORD), opened in place: its data is
        then line[REC_HEAD:REC_HEAD + n], its seq and offset in self.record; -1 when it does not verify
        (counted as a CRC error: corrupted or bytes dropped on the way). Counted as a line. Allocation-free."""
        self.lines = self.lines + 1 if self.lines < _COUNT_MASK else 0
        m = _open_record(line, k, _CRC_TABLE)
        if m < REC_HEAD:
            self.crc_errors = self.crc_errors + 1 if self.crc_errors < _COUNT_MASK else 0
            return -1
        rec = self.record
        rec[0] = line[0] | line[1] << 8
        rec[1] = line[2] | line[3] << 8 | line[4] << 16 | line[5] << 24
        return m - REC_HEAD

    def _finish(self, raw, over):
        self.lines = self.lines + 1 if self.lines < _COUNT_MASK else 0
        if over:
            self.overflows = self.overflows + 1 if self.overflows < _COUNT_MASK else 0
            return _leading_seq(raw), None, E_TOO_BIG
        sp = raw.rfind(b" ")
        if sp < 0 or min(raw) < 0x20 or max(raw) > 0x7E or ("%08x" % binascii.crc32(raw[:sp])).encode() != raw[sp + 1:]:
            self.crc_errors = self.crc_errors + 1 if self.crc_errors < _COUNT_MASK else 0
            return _leading_seq(raw), None, E_CRC
        tokens = raw[:sp].split(b" ")
        seq = _parse_seq(tokens[0])
        if not seq or len(tokens) < 2 or not _is_name(tokens[1]) or b"" in tokens:
            self.syntax_errors = self.syntax_errors + 1 if self.syntax_errors < _COUNT_MASK else 0
            return seq, None, E_SYNTAX
        return seq, tokens[1].decode(), [t.decode() for t in tokens[2:]]


def _is_name(token):
    """[a-z_]+ (bytes methods are ASCII-only on both interpreters)."""
    token = token.replace(b"_", b"a")
    return token.isalpha() and token.islower()


def _parse_seq(token):
    """1..65535 written plainly in ASCII (no sign, no leading zero), else 0."""
    if not 1 <= len(token) <= 5 or not token.isdigit() or token[0] == 0x30:
        return 0
    seq = int(token)
    return seq if seq <= 65535 else 0


def _leading_seq(raw):
    sp = raw.find(b" ")
    return _parse_seq(raw[:sp] if sp >= 0 else raw)


_REC_SPECIAL = b"\x01\x02\x03\x04\x05\x0a\x10"


def encode_record(seq, data, start=0):
    """The record line carrying data[start:] from offset start, as much of it as fits MAX_LINE; returns
    (line, end): it holds data[start:end]. PROTOCOL.md "Records" (the cut rule is part of the spec)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= 65535:
        raise ValueError("record seq must be an int in 1..65535, got %r" % (seq,))
    if not 0 <= start < len(data) or len(data) >= 1 << 30:
        raise ValueError("record start %r is not inside %d bytes of data" % (start, len(data)))
    head = struct.pack("<HI", seq, start)
    size = 1 + _escaped_size(head)
    end = start
    while end < len(data) and size + 1 + (data[end] in _REC_SPECIAL) <= MAX_LINE - 5:  # room: crc, newline
        size += 1 + (data[end] in _REC_SPECIAL)
        end += 1
    while True:  # the CRC's own escapes may not fit: then one data byte less
        crc = struct.pack("<I", binascii.crc32(data[start:end], binascii.crc32(head)))
        if size + _escaped_size(crc) + 1 <= MAX_LINE or end == start + 1:
            break
        end -= 1
        size -= 1 + (data[end] in _REC_SPECIAL)
    out = bytearray((RECORD,))
    for part in (head, data[start:end], crc):
        for b in part:
            if b in _REC_SPECIAL:
                out.append(REC_ESC)
                b ^= 0x20
            out.append(b)
    out.append(0x0A)
    return bytes(out), end


def _escaped_size(raw):
    n = len(raw)
    for b in raw:
        n += b in _REC_SPECIAL
    return n


def encode_chunk(data):
    """Base64 text of up to CHUNK raw bytes, one command argument."""
    if len(data) > CHUNK:
        raise ValueError("chunk is %d bytes, more than CHUNK=%d" % (len(data), CHUNK))
    return binascii.b2a_base64(data)[:-1].decode()


def decode_chunk(arg):
    """Bytes of a chunk argument. Strict (both interpreters' decoders skip junk): ValueError unless canonical."""
    try:
        data = binascii.a2b_base64(arg)
    except ValueError:
        data = None
    if data is None or len(data) > CHUNK or binascii.b2a_base64(data)[:-1] != arg.encode():
        raise ValueError("chunk argument is not canonical base64 of at most %d bytes" % CHUNK)
    return data


class Unwrapper:
    """Turns a wrapping counter (ticks mod 2**30, seq mod 2**16) into an unwrapped int.

    Counters only go forward (seq): steps are taken mod the period. Clocks (`signed=True`)
    may step back a little -- a log frame stamped mid-tick comes before the next tick's
    telemetry stamped at the tick's start -- so steps are taken within +-half a period.
    A device reset needs a new one.
    """

    def __init__(self, period, signed=False):
        self.period = period
        self.half = period // 2 if signed else 0
        self.last = None
        self.value = None

    def __call__(self, raw):
        if self.last is None:
            self.value = raw
        else:
            self.value += (raw - self.last + self.half) % self.period - self.half
        self.last = raw
        return self.value


def unwrap_ticks(ticks):
    """Device µs stamps (mod TICKS_PERIOD) as unwrapped µs (small steps back are kept as such)."""
    u = Unwrapper(TICKS_PERIOD, signed=True)
    return [u(t) for t in ticks]


def unwrap_seqs(seqs):
    """Frame sequence numbers (mod 2**16) as increasing counts; a jump above 1 is lost frames."""
    u = Unwrapper(1 << 16)
    return [u(s) for s in seqs]
