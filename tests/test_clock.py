"""The board's clock (host/sim/clock.py) on its own: what it bills for work, calls and sleeps.

The ledger is driven here by hand, without a VM (no kernel CPU figures: the VM's own work
figure is taken as it comes), so every number is exact. test_sim.py checks it against the
real VM.
"""

import time

import pytest

from host.sim import clock as C
from host.sim.bus import ADC, CLOCK, GC, SLEEP


def billing(cpu=C.ESP32, speed=0, shim=None):
    """A clock whose VM is up and billed, with no kernel figures (a VM on a non-Linux host)."""
    clock = C.BoardClock(cpu, speed)
    clock.cold = None  # no cold-cache correction (a process that booted a board before has one)
    clock.shim_us.update(shim or {})
    clock.ready()
    clock._billing = True
    return clock


def test_work_is_billed_at_the_factor_of_the_cpu_clock():
    clock = billing()
    assert clock.mhz == C.POWER_ON_MHZ == 160  # an ESP32 boots at 160 MHz
    start, end, wait = clock.call(CLOCK, 100, 2.5)
    assert start == pytest.approx(100 * 30 * 240 / 160) and end == pytest.approx(start + 2.5) and wait == 0
    clock.set_freq(15, 0, 240)
    t = clock.now()
    _, end, _ = clock.call(ADC, 100, 30)
    assert end - t == pytest.approx(100 * 30 + 30)


def test_the_shims_own_time_is_not_billed():
    clock = billing(shim={CLOCK: 1.5})
    clock.set_freq(15, 0, 240)
    t = clock.now()
    clock.call(CLOCK, 1, 0)  # all of it the shim's
    assert clock.now() == t
    clock.call(CLOCK, 11.5, 0)
    assert clock.now() - t == pytest.approx(10 * 30)


def test_gc_is_billed_at_its_own_factor():
    clock = billing()
    clock.set_freq(15, 0, 240)
    clock.gc(GC, 0, True)
    t = clock.now()
    clock.gc(GC, 100, False)
    assert clock.now() - t == pytest.approx(100 * C.ESP32.gc_factor)


def test_host_model_and_free_cpu():
    host = billing(C.HOST)
    host.set_freq(15, 0, 80)  # the host's speed does not follow the modeled CPU clock
    t = host.now()
    host.call(CLOCK, 100, 0)
    assert host.now() - t == pytest.approx(100)
    free = C.BoardClock(C.cpu_model("esp32", 0), speed=0)
    free.cold = None
    free.ready()
    assert not free._billing  # factor 0: the VM's work costs no board time, runs repeat exactly
    free.call(CLOCK, 1000, 2.5)
    assert free.now() == pytest.approx(2.5)


def test_virtual_sleeps_add_up_and_pace_at_the_speed():
    clock = billing(speed=0)
    wake, wait = clock.sleep(SLEEP, 0, 5000)
    assert wake == 5000 and wait == 0  # flat out: no pacing
    paced = billing(speed=2.0)
    wake, wait = paced.sleep(SLEEP, 0, 100000)
    assert wake == 100000 and 45000 < wait <= 50000  # 100 ms of board time in 50 ms


def test_real_clock_never_lags_the_wall_and_makes_a_fast_vm_wait():
    clock = billing(speed=None)
    time.sleep(0.02)
    start, t, _ = clock.call(CLOCK, 0, 0)  # idle time is real time
    assert start >= 20000 - C.SLACK_US
    _, end, wait = clock.call(CLOCK, 1000, 0)  # 1 ms of VM work: 45 ms of board time at 160 MHz, from the last call
    assert end - t == pytest.approx(45000, abs=50)
    assert 40000 < wait <= 45000  # the VM is held back until the wall clock catches up
    clock = billing(speed=None)
    _, _, wait = clock.call(CLOCK, 20, 0)  # 0.9 ms ahead: within what is paid at the next sleep
    assert wait == 0
    wake, wait = clock.sleep(SLEEP, 0, 4000)
    assert 4000 < wait <= 4900  # the sleep pays the debt too


def test_a_sleep_cut_short_does_not_move_the_clock_ahead():
    clock = billing(speed=None)
    wake, wait = clock.sleep(SLEEP, 0, 200000)
    time.sleep(0.01)  # Ctrl-C after 10 ms: the VM makes its next call early
    t, _, wait = clock.call(CLOCK, 0, 0)
    assert 10000 - C.SLACK_US <= t < 60000 and wait == 0


def test_calibration_takes_the_shims_mean_and_the_calls_least_cpu():
    clock = C.BoardClock(C.ESP32, speed=0)
    clock.cold = None
    samples = [(w, (c, 0)) for w, c in ((1, 10_000), (2, 22_000), (1, 33_000), (2, 63_000), (1, 72_000), (50, 81_500))]
    feed = iter(samples)
    clock._sample = lambda: next(feed)[1]
    for w, _ in samples:
        clock.calibrate(ADC, w)
    clock.calibrated()
    assert clock.shim_us[ADC] == pytest.approx((2 + 1 + 2 + 1) / 4)  # the top tenth (preempted) left out
    assert clock.floor_us[ADC] == pytest.approx(9.0)  # the least CPU a call took


def test_kernel_cpu_caps_work_that_was_waiting_not_running():
    """The VM's own figure is wall time: a VM preempted or stopped mid-stretch is capped by its CPU."""
    clock = billing(speed=0)
    clock.set_freq(15, 0, 240)
    figures = iter([(0, 0), (20_000, 1), (40_000, 2), (100_000, 5)])
    clock._stat = object()
    clock._sample = lambda: next(figures)
    clock.floor_us[CLOCK] = 5.0
    clock.ready()
    t = clock.now()
    clock.call(CLOCK, 5000, 0)  # 5 ms of wall time, but 20 µs of CPU, 5 of them the call's own
    assert clock.now() - t == pytest.approx(15 * 30)
    t = clock.now()
    clock.call(CLOCK, 10, 0)  # a short stretch: the VM's own figure, under its CPU
    assert clock.now() - t == pytest.approx(10 * 30)
    t = clock.now()
    clock.call(CLOCK, 1000, 0)  # 60 µs of CPU over 3 wake-ups: two of them not the call's own
    assert clock.now() - t == pytest.approx((60 - 5 - 2 * 5) * 30)


def test_cpu_model_options_give_one_line_errors():
    assert C.cpu_model("esp32", 40).factor == 40 and C.cpu_model("host") is C.HOST
    for bad in (("arm", None), ("esp32", -1), ("esp32", float("nan")), ("esp32", float("inf")), ("host", 30)):
        with pytest.raises(ValueError, match="--cpu"):
            C.cpu_model(*bad)


def test_cold_caches_cost_a_long_stretch_their_micro_seconds_once_and_a_short_one_its_ratio():
    clock = billing()
    clock.cold = (30.0, 4.0)
    assert clock.warm(5000) == 4970 and clock.warm(60) == 30 and clock.warm(8) == 2
    assert all(clock.warm(w) <= clock.warm(w + 1) for w in range(0, 200))  # monotonic: local clock reads agree
