"""The VM's end of the bus to the supervisor: every pin and clock call is one round trip.

host/sim/bus.py has the layout and the op table (these consts are the same table, tested).
The supervisor answers from the VirtualBoard and keeps the board's clock
(host/sim/clock.py): each request says how long the VM worked since its previous
call returned (its own µs clock), the supervisor bills that at the ESP32's pace
and adds the call's modeled duration, so a call's reply may tell the VM to wait
(it ran ahead of the board). A clock read is answered here without a round trip
when the host has not taken the CPU away from the VM since the last call (its
switch-in count in /proc/self/schedstat is unchanged): the board's time at that
call plus the work since at the CPU model's factor; the next request says what
was shown, so the supervisor's clock never falls behind it. (Round trips are not
free: each switch to the supervisor and back leaves the VM's caches cold, and
the VM's next microseconds run slower than they would on a board.) Allocation-free: the firmware calls this 1000+
times a second, so requests go through one preallocated buffer and replies are
decoded byte by byte. Functions a firmware call passes through are @micropython.native:
faster, and, like the ESP32's C built-ins, absent from tracebacks (a Ctrl-C in a sleep
shows the firmware's line, not ours).
"""

import struct
import time  # the VM's own: imported before the bootstrap installs the ESP32's

import micropython
from micropython import const

_HDR = "<BBHHHIIii"  # op, a, n, seq, local clock reads, work µs, µs shown past the last call's end, x, y
HDR_SIZE = const(24)
_MAX_WORK = const(4000000000)
_REPLY = const(64)  # seq, data bytes, value, wait µs, board µs (<HHiIq) + data, padded
_REPLY_HEAD = const(20)
MAX_PAYLOAD = const(4000)  # a request is one atomic pipe write (PIPE_BUF)

PWM = const(1)
PIN_W = const(2)
PIN_R = const(3)
ADC = const(4)
I2C_INIT = const(5)
I2C_W = const(6)
I2C_R = const(7)
I2C_SCAN = const(8)
RESET = const(9)
SOFT_RESET = const(10)
WDT = const(11)
CLOCK = const(12)
READY = const(13)
SLEEP = const(14)
FREQ = const(15)
GC = const(16)
CAL_DONE = const(17)
CAL = const(0x40)  # flag: a calibration call, answered without touching the board

req = bytearray(HDR_SIZE + 40)  # header + memaddr + small payloads (grown by load())
rep = bytearray(_REPLY)
cal = 0  # CAL while the bootstrap calibrates
_tx = None
_rx = None
_seq = 0
_left = 0  # the VM's own µs clock when the last call returned
_io_us = 0  # µs since then in system calls of the firmware's own I/O (Stdio): not the ESP32's work
_end = 0  # the board's µs at the end of the last call
_switches = -1  # times the host switched the VM in, as of the last call's return
_factor_q = 0  # board µs per 1024 µs of the VM's work (the CPU model at this CPU clock); 0: no local reads
_read_q = 0  # board µs per clock read x 1024 (the ESP32's ticks_us)
_reads = 0  # clock reads answered here since the last call ...
_shown = 0  # ... and the latest of them, in µs past _end
_shim_us = 0  # µs of every stretch that are the shim's own code around a call (x 100)
_cold_us = 0  # the first µs of a stretch after a call that the VM loses to cold caches (x 100) ...
_cold_ratio = 100  # ... or how many times slower it runs (x 100): work counts as max(w - cold, w / ratio)
_sched = None  # /proc/self/schedstat
_sbuf = bytearray(96)


def init(rfd, wfd, factor_q, read_q):
    global _rx, _tx, _left, _sched, _factor_q, _read_q
    _rx = open(rfd, "rb")
    _tx = open(wfd, "wb")
    _factor_q, _read_q = factor_q, read_q
    try:
        _sched = open("/proc/self/schedstat", "rb")
    except OSError:  # not Linux: every clock read is a round trip
        _factor_q = 0
    _left = time.ticks_us()


def set_shim(shim_us):
    global _shim_us
    _shim_us = shim_us


def set_cold(cold_us, ratio):
    global _cold_us, _cold_ratio
    _cold_us, _cold_ratio = cold_us, max(100, ratio)


@micropython.native
def warm(work):
    """µs of work as the VM would have done it with warm caches (see set_cold; clock.BoardClock.warm)."""
    a = work - _cold_us // 100
    b = work * 100 // _cold_ratio
    return a if a > b else b


def set_factor(factor_q):
    global _factor_q
    if _sched:
        _factor_q = factor_q


@micropython.native
def _switched_in():
    """Times the host has switched this process in (the third field of /proc/self/schedstat)."""
    f = _sched
    f.seek(0)
    n = f.readinto(_sbuf)
    b = _sbuf
    i = 0
    spaces = 0
    while i < n and spaces < 2:
        if b[i] == 32:
            spaces += 1
        i += 1
    v = 0
    while i < n and 48 <= b[i] <= 57:
        v = v * 10 + b[i] - 48
        i += 1
    return v


@micropython.native
def clock():
    """The board's µs now: worked out here if the VM kept the CPU since the last call, else asked."""
    global _io_us, _reads, _shown
    if _factor_q and not cal:
        t = time.ticks_us()
        same = _switched_in() == _switches
        if same:
            work = warm(time.ticks_diff(t, _left) - _io_us - _shim_us // 100)
            _reads += 1
            shown = ((work if work > 0 else 0) * _factor_q + _reads * _read_q) >> 10
            if shown > _shown:
                _shown = shown
            _io_us += time.ticks_diff(time.ticks_us(), t)  # this read's own time is the emulation's
            return _end + _shown
        _io_us += time.ticks_diff(time.ticks_us(), t)
    call(CLOCK, 0, 0, 0, 0)
    return _end


@micropython.native
def send(op, a=0, n=0, x=0, y=0):
    """A message that gets no answer (ready, reset requests, WDT): one atomic pipe write."""
    struct.pack_into(_HDR, req, 0, op, a, n, 0, 0, 0, 0, x, y)
    _tx.write(req, HDR_SIZE + n)


@micropython.native
def call(op, a, n, x, y, into=None, size=0):
    """A round trip: the signed value; `size` data bytes go into `into`; waits as the reply says.

    A Ctrl-C (KeyboardInterrupt) can cut a call short anywhere, leaving its reply in
    the pipe: replies carry the request's seq, and stale ones are skipped here.
    """
    global _seq, _left, _io_us, _end, _switches, _reads, _shown
    work = time.ticks_diff(time.ticks_us(), _left) - _io_us
    _seq = seq = (_seq + 1) & 0xFFFF
    struct.pack_into(_HDR, req, 0, op | cal, a, n, seq, _reads, work if work < _MAX_WORK else _MAX_WORK,
                     _shown, x, y)
    _io_us = _reads = _shown = 0
    _tx.write(req, HDR_SIZE + n)
    r = rep
    got = 0
    while True:
        if not _rx.readinto(r, _REPLY):
            raise OSError(5)  # the supervisor is gone
        if r[0] | r[1] << 8 == seq:
            k = r[2] | r[3] << 8
            for i in range(k):
                into[got + i] = r[_REPLY_HEAD + i]
            got += k
            if got >= size:
                break
    _end = (r[12] | r[13] << 8 | r[14] << 16 | r[15] << 24
            | (r[16] | r[17] << 8 | r[18] << 16 | r[19] << 24) << 32)
    wait = r[8] | r[9] << 8 | r[10] << 16 | r[11] << 24
    if wait:
        time.sleep_us(wait)
    if _factor_q:
        t = time.ticks_us()
        _switches = _switched_in()
        _left = time.ticks_us()
    else:
        _left = time.ticks_us()
    v = r[4] | r[5] << 8 | r[6] << 16 | r[7] << 24
    return v - 0x100000000 if v & 0x80000000 else v


@micropython.native
def load(memaddr, m, buf):
    """Put the memory address (big-endian, m bytes) and buf after the request header; return the length."""
    global req
    n = m + len(buf)
    if n > MAX_PAYLOAD:
        raise OSError(22)  # EINVAL: keep I2C writes under 4 KB
    if HDR_SIZE + n > len(req):
        req = bytearray(HDR_SIZE + n)
    i = HDR_SIZE
    while m:
        m -= 1
        req[i] = (memaddr >> (8 * m)) & 0xFF
        i += 1
    for j in range(len(buf)):
        req[i + j] = buf[j]
    return n


class Stdio:
    """The firmware's stdin/stdout (sys.stdin.buffer, sys.stdout.buffer, select.poll on stdin) with
    the time of their system calls kept out of the work billed: a pty's read, write and poll cost
    this host microseconds of kernel time each, where an ESP32 reads its ring buffer and fills its
    UART FIFO; what remains billed (this wrapper's own call) stands in for the ESP32's."""

    def __init__(self, real, buffer=None):
        self._real = real
        if buffer is not None:
            self.buffer = Stdio(buffer)

    @micropython.native
    def write(self, buf, a=-1, b=-1):
        global _io_us
        t = time.ticks_us()
        real = self._real
        n = real.write(buf) if a < 0 else (real.write(buf, a) if b < 0 else real.write(buf, a, b))
        _io_us += time.ticks_diff(time.ticks_us(), t)
        return n

    @micropython.native
    def readinto(self, buf, n=-1):
        global _io_us
        t = time.ticks_us()
        got = self._real.readinto(buf) if n < 0 else self._real.readinto(buf, n)
        _io_us += time.ticks_diff(time.ticks_us(), t)
        return got

    @micropython.native
    def read(self, n=-1):
        global _io_us
        t = time.ticks_us()
        data = self._real.read(n)
        _io_us += time.ticks_diff(time.ticks_us(), t)
        return data

    @micropython.native
    def ipoll(self, timeout=-1, flags=0):
        global _io_us
        t = time.ticks_us()
        got = self._real.ipoll(timeout, flags)
        _io_us += time.ticks_diff(time.ticks_us(), t)
        return got

    @micropython.native
    def poll(self, timeout=-1):
        global _io_us
        t = time.ticks_us()
        got = self._real.poll(timeout)
        _io_us += time.ticks_diff(time.ticks_us(), t)
        return got

    def register(self, obj, mask=-1):
        self._real.register(obj._real if isinstance(obj, Stdio) else obj, mask)

    def modify(self, obj, mask):
        self._real.modify(obj._real if isinstance(obj, Stdio) else obj, mask)

    def unregister(self, obj):
        self._real.unregister(obj._real if isinstance(obj, Stdio) else obj)

    def __getattr__(self, name):
        return getattr(self._real, name)
