"""The ESP32's `time`, installed as `time`/`utime` in the virtual Gen0's VM.

Why not the unix VM's own: its ticks wrap at 2**62 (an ESP32's at 2**30, and
firmware must get the wrap right), and tests need a clock that can run faster
than real time and repeat exactly.

Two clocks, chosen by the supervisor at boot (init()):
- real: µs since power-on from the host's monotonic clock (continues across
  soft resets, restarts at a hard reset, like the ESP32's);
- virtual (`host sim --speed X`): a counter that moves only when the firmware
  sleeps, when a peripheral call takes its modeled time (spend()), and by
  2 µs per ticks_* call (_TICK_COST_US) so that busy-waits end. Sleeps are paced at X
  times real time (X=0: no pacing). Same program + same seed -> same run.
time()/localtime() count from 2000-01-01 at power-on (the ESP32's RTC is not set).
"""

import time as _host
from micropython import const

_MASK = const(0x3FFFFFFF)  # ticks period 2**30
_HALF = const(0x20000000)
_TICK_COST_US = const(2)
_EPOCH_2000 = const(946684800)
_LAG_RESYNC_US = const(50000)  # a VM slower than X*real stops trying to catch up

_t = 0  # virtual clock: µs since power-on
_base = 0  # real clock: host ticks_us at power-on
_speed_milli = 0  # virtual pacing: X * 1000, 0 = as fast as possible
_anchor_host = 0
_anchor_t = 0
_rtc_us = 0  # µs from power-on to this boot's t=0 (hard resets keep the RTC running)
cpu_mhz = 240  # machine.freq() keeps this, ticks_cpu counts cycles
report = None  # machine sets this while a WDT runs: report() on every sleep (virtual clock)


def init(virtual, start, speed_milli, rtc_us):
    """Pick the clock. real: start = host ticks_us at power-on; virtual: start = µs to continue from."""
    global _t, _base, _speed_milli, _anchor_host, _anchor_t, _rtc_us
    global now, ticks_us, ticks_ms, ticks_cpu, sleep, sleep_ms, sleep_us, spend
    _rtc_us = rtc_us
    if virtual:
        _t = _anchor_t = start
        _anchor_host = _host.ticks_us()
        _speed_milli = speed_milli
        now, ticks_us, ticks_ms, ticks_cpu = _v_now, _v_ticks_us, _v_ticks_ms, _v_ticks_cpu
        sleep, sleep_ms, sleep_us, spend = _v_sleep, _v_sleep_ms, _v_sleep_us, _v_spend
    else:
        _base = start


# Real clock (the defaults).
def now():
    """µs since this boot's t=0, not wrapped: what the supervisor and the board see."""
    return _host.ticks_us() - _base


def ticks_us():
    return (_host.ticks_us() - _base) & _MASK


def ticks_ms():
    return ((_host.ticks_us() - _base) // 1000) & _MASK


def ticks_cpu():
    return ((_host.ticks_us() - _base) * cpu_mhz) & _MASK


sleep = _host.sleep
sleep_ms = _host.sleep_ms
sleep_us = _host.sleep_us


def spend(start, us):
    """A peripheral call that began at `start` lasts `us`: busy-wait like the ESP32 would."""
    end = start + us
    while _host.ticks_us() - _base < end:
        pass


# Virtual clock.
def _v_now():
    return _t


def _v_ticks_us():
    global _t
    _t += _TICK_COST_US
    return _t & _MASK


def _v_ticks_ms():
    global _t
    _t += _TICK_COST_US
    return (_t // 1000) & _MASK


def _v_ticks_cpu():
    global _t
    _t += _TICK_COST_US
    return (_t * cpu_mhz) & _MASK


def _v_sleep_us(us):
    global _t, _anchor_host, _anchor_t
    if us > 0:
        _t += us
    if report:
        report()
    if _speed_milli:
        host = _host.ticks_us()
        ahead = _anchor_host + (_t - _anchor_t) * 1000 // _speed_milli - host
        if ahead > 0:
            _host.sleep_us(ahead)
        elif ahead < -_LAG_RESYNC_US:
            _anchor_host = host
            _anchor_t = _t


def _v_sleep_ms(ms):
    _v_sleep_us(ms * 1000)


def _v_sleep(s):
    _v_sleep_us(int(s * 1000000))


def _v_spend(start, us):
    global _t
    _t += us


# Wrapping arithmetic with the ESP32's period.
def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


def ticks_add(ticks, delta):
    if delta <= -_HALF or delta >= _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


# Calendar: epoch 2000-01-01, the RTC starts there at power-on.
def time():
    return (_rtc_us + now()) // 1000000


def time_ns():
    return (_rtc_us + now()) * 1000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return _host.gmtime(secs + _EPOCH_2000)[:8]


localtime = gmtime


def mktime(t):
    return _host.mktime(t) - _EPOCH_2000
