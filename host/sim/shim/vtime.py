"""The ESP32's `time`, installed as `time`/`utime` in the virtual Gen0's VM.

Why not the unix VM's own: its ticks wrap at 2**62 (an ESP32's at 2**30, and
firmware must get the wrap right), and its clock is the host's, which runs
MicroPython ~30x faster than a board. Here every clock read and sleep asks the
supervisor, which keeps the board's clock (host/sim/clock.py: the VM's CPU time
at the ESP32's factor, modeled peripheral times, sleeps; real or virtual).
time()/localtime() count from 2000-01-01 at power-on (the ESP32's RTC is not set).
Native code: absent from tracebacks, like the ESP32's built-ins.
"""

import time as _host  # the VM's own: imported before the bootstrap installs this module as `time`

import micropython
from micropython import const

import gen0bus as bus

_MASK = const(0x3FFFFFFF)  # ticks period 2**30
_HALF = const(0x20000000)
_EPOCH_2000 = const(946684800)
_MAX_SLEEP_US = const(0x3FFFFFFF)  # one SLEEP call carries at most this (int32)

_rtc_us = 0  # µs from power-on to this boot's t=0 (hard resets keep the RTC running)
_cpu_mhz = 160  # machine.freq() keeps this; ticks_cpu counts cycles


def _init(rtc_us, mhz):
    global _rtc_us, _cpu_mhz
    _rtc_us = rtc_us
    _cpu_mhz = mhz


@micropython.native
def _now():
    """µs since power-on, not wrapped: the board's clock."""
    return bus.clock()


@micropython.native
def ticks_us():
    return _now() & _MASK


@micropython.native
def ticks_ms():
    return (_now() // 1000) & _MASK


@micropython.native
def ticks_cpu():
    return (_now() * _cpu_mhz) & _MASK


@micropython.native
def _number(x, kind):
    """x if the ESP32 port's mp_obj_get_int/_float would take it; its TypeError if not."""
    if isinstance(x, (int, bool)) or (kind is float and isinstance(x, float)):
        return x
    raise TypeError("can't convert %s to %s" % (type(x).__name__, kind.__name__))


@micropython.native
def sleep_us(us):
    """Block for `us` µs of board time (<= 0: return at once, as the ESP32 port does)."""
    us = _number(us, int)
    while True:
        step = us if us < _MAX_SLEEP_US else _MAX_SLEEP_US
        bus.call(bus.SLEEP, 0, 0, step if step > 0 else 0, 0)
        us -= step
        if us <= 0:
            return


@micropython.native
def sleep_ms(ms):
    sleep_us(_number(ms, int) * 1000)


@micropython.native
def sleep(s):
    sleep_us(int(_number(s, float) * 1000000))


# Wrapping arithmetic with the ESP32's period.
@micropython.native
def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


@micropython.native
def ticks_add(ticks, delta):
    if delta <= -_HALF or delta >= _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


# Calendar: epoch 2000-01-01, the RTC starts there at power-on.
@micropython.native
def time():
    return (_rtc_us + _now()) // 1000000


@micropython.native
def time_ns():
    return (_rtc_us + _now()) * 1000


@micropython.native
def gmtime(secs=None):
    if secs is None:
        secs = time()
    return _host.gmtime(secs + _EPOCH_2000)[:8]


localtime = gmtime


@micropython.native
def mktime(t):
    return _host.mktime(t) - _EPOCH_2000
