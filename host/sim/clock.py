"""The board's clock: how long an ESP32 would have taken for what the VM did.

The unix MicroPython VM runs ~30x faster than an ESP32, so a clock that only
counted real time would make every busy-time figure and every loop rate look
30x better than a board's. The supervisor keeps the virtual Gen0's clock
instead; every sleep and pin call is a round trip to it (a clock read only when
the VM cannot work it out itself: shim/gen0bus.py, clock()).

    ESP32 time += factor(MHz) x the firmware's work since the last call     billed
                + the call's modeled duration (ADC, I2C, PWM, ticks_us)     board.cost_us
                + sleeps

- Work is counted as the VM would have done it with warm caches (warm()): every
  stretch starts right after a call or a sleep, when the host has had the VM's
  core, and its first tens of µs run several times slower than the hot loops the
  factor was measured with. The first boot measures by how much.

- The firmware's work: each request carries how long the VM ran since its previous
  call returned, by its own µs clock, less the shim's own Python around a call
  (measured per kind of call at every boot: a burst of calls that the supervisor
  answers without touching the board). A wall-clock figure, so it also holds time
  the VM was preempted by the host or stopped by the supervisor; it is therefore
  capped by the VM's CPU time from the kernel (exact at a round trip: the VM is
  blocked on the pipe), less the least a call was seen to cost (the system calls
  and scheduling of a round trip: 13-40 µs of the VM's CPU here, too noisy to
  subtract call by call) for each time it was switched in. The same correction
  prices a stretch without calls (the REPL echoing and compiling what mpremote
  pastes, a loop typed at the REPL): kernel time per byte read is not an ESP32's.
- `factor` is the CpuModel's: bytecode x30 at 240 MHz (REFERENCE.md's perf_bench
  calibration), scaled by 240 / machine.freq() (an ESP32 boots at 160 MHz), and
  the GC's x50 inside gc.collect().
- Real clock (speed None): ESP32 time never lags the wall clock by more than
  SLACK_US (idle time is real time), and it may run ahead of it (a debt) by at
  most PAY_AT_US: past that the VM is made to wait (the reply to its next call
  says how long; a VM that makes no calls, a loop typed at the REPL, is
  stopped by the supervisor, see throttle()). So wall-clock behaviour --
  mpremote, flashing, deploys -- is paced like a board's.
- Virtual clock (speed X): ESP32 time is only the sum above; sleeps are paced
  at X times real time (0: not at all). With factor 0 (`--cpu-factor 0`) CPU is
  free and a run repeats bit for bit.
"""

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, replace

from host.sim.bus import CLOCK as CLOCK_OP  # its calibrated floor is the cost of one wake-up

POWER_ON_MHZ = 160  # ESP32_GENERIC boots at 160 MHz until machine.freq(240_000_000)
SLACK_US = 500  # real clock: ESP32 time may trail the wall clock by this (round trips' own wall time)
PAY_AT_US = 2000  # real clock: a debt past this is paid at the next call
IDLE_NS = 2_000_000  # no call for this long: the supervisor paces the VM itself (throttle)
LAG_RESYNC_US = 50_000  # virtual pacing: a VM this far behind X*real stops trying to catch up


@dataclass(frozen=True)
class CpuModel:
    """How much slower than this machine's VM the modeled CPU runs MicroPython.

    factor: ESP32 µs per µs of VM CPU at ref_mhz (bytecode); gc_factor: the same inside
    gc.collect(); scales: whether machine.freq() changes it (a real CPU's clock does, the
    host's does not)."""

    name: str
    factor: float
    gc_factor: float
    ref_mhz: int = 240
    scales: bool = True
    host_speed: float = 1.0  # the factors above already include it (for_host)

    def at(self, mhz, gc=False):
        f = self.gc_factor if gc else self.factor
        return f * self.ref_mhz / mhz if self.scales else f

    def describe(self):
        if self.name == "host":
            return "host (the VM's own speed, no CPU model)"
        host = f", this host runs the VM {self.host_speed:.2f}x the reference machine" if self.host_speed != 1.0 else ""
        return f"{self.name} (x{self.factor:g} bytecode, x{self.gc_factor:g} GC at {self.ref_mhz} MHz{host})"


# REFERENCE.md: perf_bench on this VM vs the published ESP32 run; working factors at 240 MHz
# bytecode ~30 (22-40), float ~38, native ~30, viper ~40, GC ~50 (SIM.md: how far to trust them).
ESP32 = CpuModel("esp32", factor=30.0, gc_factor=50.0)
HOST = CpuModel("host", factor=1.0, gc_factor=1.0, scales=False)
FACTOR_RANGE = (22.0, 40.0)  # bytecode factors seen over the perf_bench files


# The CPU factors hold for the VM on the project's 2-core machine. On a faster or slower host the
# VM's CPU time shrinks or grows, so the factor is scaled by how fast this host runs a reference
# workload (a bytecode loop with calls, attribute and list access: best of 15 runs) -- unless
# within the spread the reference machine itself shows from run to run (its cores differ ~1.4x).
REF_WORKLOAD = """
import time
class Acc:
    def __init__(self):
        self.v = 0
    def add(self, x):
        self.v = (self.v + x) & 0xFFFF
        return self.v
def work(n):
    a = [0] * 16
    acc = Acc()
    s = 0
    for i in range(n):
        a[i & 15] = i * 3 + (s >> 2)
        s = acc.add(a[(i + 5) & 15])
    return s
best = 1 << 30
for r in range(15):
    t = time.ticks_us()
    work(2000)
    best = min(best, time.ticks_diff(time.ticks_us(), t))
print('best', best)
"""
REF_WORKLOAD_US = 545  # its median on the reference machine (2026-12; 16 runs: 526-559 typical, 387-635 seen)
REF_SPREAD = (0.6, 1.6)  # host speed ratios treated as the reference machine's own (its cores: 1.4x apart)
_speeds = {}
_host_cold = None  # the first calibration in this process: a property of the host, kept for every board after

def host_speed(exe):
    """How fast this host's VM runs MicroPython relative to the reference machine (1.0 within its spread)."""
    if exe not in _speeds:
        ratio = 1.0
        try:
            out = subprocess.run([exe, "-c", REF_WORKLOAD], capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL).stdout
            best = int(re.search(r"best (\d+)", out).group(1))
            ratio = REF_WORKLOAD_US / max(best, 1)
        except (OSError, subprocess.TimeoutExpired, AttributeError, ValueError):
            pass
        _speeds[exe] = ratio if not REF_SPREAD[0] <= ratio <= REF_SPREAD[1] else 1.0
    return _speeds[exe]


def for_host(model, speed):
    """The model with its factors scaled to a host whose VM runs `speed` times the reference machine's."""
    if not model.scales or speed == 1.0:
        return model
    return replace(model, factor=model.factor * speed, gc_factor=model.gc_factor * speed, host_speed=speed)


def cpu_model(cpu="esp32", factor=None):
    """The CpuModel for `--cpu esp32|host` and `--cpu-factor X` (X at 240 MHz; 0 = CPU time is free)."""
    if cpu not in ("esp32", "host"):
        raise ValueError(f"--cpu {cpu!r}: give esp32 or host")
    if factor is None:
        return ESP32 if cpu == "esp32" else HOST
    if cpu == "host":
        raise ValueError("--cpu-factor sets the ESP32 model's factor: leave out --cpu host")
    if not 0 <= factor <= 1000:
        raise ValueError(f"--cpu-factor {factor}: give a factor between 0 and 1000 (30 = an ESP32 at 240 MHz)")
    return CpuModel(f"esp32 x{factor:g}", factor=float(factor), gc_factor=float(factor) * ESP32.gc_factor / ESP32.factor)


class SchedStat:
    """A process's CPU time (ns) and how many times it was switched in, from /proc/PID/schedstat (Linux).

    Exact for a process that is blocked or stopped (the kernel updates both when it switches a
    task out); for a running one it may lag by up to a scheduler tick."""

    def __init__(self, pid):
        self.fd = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)

    def read(self):
        """(CPU ns, times switched in), or None once the process is gone."""
        try:
            fields = os.pread(self.fd, 128, 0).split()
            return int(fields[0]), int(fields[2])
        except (OSError, IndexError, ValueError):
            return None

    def close(self):
        os.close(self.fd)


def open_schedstat(pid):
    try:
        return SchedStat(pid)
    except OSError:  # not Linux: the VM's own figures only, no cap from the kernel
        return None


class BoardClock:
    """µs since power-on as the modeled board counts them; one per virtual Gen0, kept across soft resets.

    Called from the bus thread (calls) and the supervisor thread (throttle); one lock."""

    def __init__(self, cpu=ESP32, speed=None):
        self.cpu = cpu
        self.speed = speed  # None: real clock
        self.lock = threading.Lock()
        self.shim_us = {}  # op -> the shim's own µs around a call of that kind (mean)
        self.floor_us = {}  # op -> the least VM CPU µs a call of that kind was seen to cost
        self.cold = _host_cold  # (µs, ratio): how the VM runs a stretch after a sleep, caches cold (warm())
        self.billed_us = 0.0  # ESP32 µs of firmware work billed so far (work x factor)
        self.work_us = 0.0  # VM µs of firmware work billed so far
        self.paced_us = 0.0  # wall µs the VM was made to wait to keep the board's pace
        self.power_on()

    # -- boots ---------------------------------------------------------------
    def power_on(self):
        """Hard reset: the clock restarts at 0, the CPU at its power-on frequency."""
        with self.lock:
            self.t = 0.0
            self._end = 0.0  # the board's time at the end of the last call (the VM's local reads start there)
            self.mhz = POWER_ON_MHZ
            self._wall0 = time.monotonic_ns()
            self._anchor = (self._wall0, 0.0)
            self._detach()

    def attach(self, pid):
        """A new VM process: its CPU figures (calibration calls come before ready())."""
        with self.lock:
            self._detach()
            self._stat = open_schedstat(pid) if self.cpu.factor else None

    def ready(self):
        """The VM is up (its shims installed): from now on its work is the firmware's."""
        with self.lock:
            self._billing = bool(self.cpu.factor)
            self._seg = self._sample()
            self._last_call = time.monotonic_ns()

    def detach(self):
        with self.lock:
            self._detach()

    def _detach(self):
        if getattr(self, "_stat", None):
            self._stat.close()
        self._stat = None
        self._billing = False
        self._seg = None  # (CPU ns, switches) at the start of the current stretch of work
        self._seg_billed = 0.0  # VM µs of it already billed (by throttle())
        self._last_call = 0
        self._gc = False
        self._cal = {}
        self._cal_prev = None
        self._sleep_until = None
        self._shown = None  # (cost of the VM's own clock reads, the latest board time it showed)

    @property
    def paces(self):
        """Whether the supervisor should watch for a VM that runs ahead without calls."""
        return self._billing and self._stat is not None

    # -- calls -----------------------------------------------------------------
    def call(self, op, work_us, cost_us):
        """A round trip of kind `op` after work_us of the VM's work, taking the board cost_us:
        (start µs, end µs, wait µs). The VM waits `wait` wall µs before it goes on (real clock:
        it ran ahead of the board; virtual: ahead of X times real time)."""
        with self.lock:
            now = time.monotonic_ns()
            self._bill(op, work_us, now)
            start = self.t
            self.t += cost_us
            wait = self._pace(now, PAY_AT_US)
            self._last_call = now + wait * 1000  # the VM pays while it waits: no throttle meanwhile
            self._end = self.t
            return start, self.t, wait

    def sleep(self, op, work_us, us):
        """time.sleep_us(us) and friends: (the wake-up time, wall µs the VM sleeps)."""
        with self.lock:
            now = time.monotonic_ns()
            self._bill(op, work_us, now)
            self.t += max(0, us)
            wait = self._pace(now, 0)
            self._sleep_until = (now + wait * 1000, self.t) if wait else None
            self._last_call = now + wait * 1000
            self._end = self.t
            return self.t, wait

    def set_freq(self, op, work_us, mhz):
        """machine.freq(): the factor follows the CPU clock from here on."""
        result = self.call(op, work_us, 0)
        with self.lock:
            self.mhz = mhz
        return result

    def gc(self, op, work_us, running):
        """gc.collect() starts (True) or ends: the work in between is billed at the GC factor."""
        result = self.call(op, work_us, 0)
        with self.lock:
            self._gc = running
        return result

    def factor_q(self):
        """Board µs per 1024 µs of VM work now (the VM answers clock reads with it); 0: no billing."""
        return round(self.cpu.at(self.mhz) * 1024) if self.cpu.factor else 0

    def local_reads(self, reads, shown_us, cost_us):
        """The VM answered `reads` clock reads itself since its last call, the latest `shown_us` past
        that call's end: bill their cost, and never fall behind what the VM showed."""
        if reads:
            with self.lock:
                self._shown = (reads * cost_us, self._end + shown_us)

    def now(self):
        """The board's time now (for the supervisor: WDT, resets); bills nothing."""
        with self.lock:
            if self.speed is None:
                return max(self.t, (time.monotonic_ns() - self._wall0) / 1000 - SLACK_US)
            return self.t

    def calibrate(self, op, work_us):
        """A calibration call (answered without touching the board): the shim's µs and the VM's CPU per call."""
        with self.lock:
            c = self._sample()
            if self._cal_prev and self._cal_prev[0] == op and c and self._cal_prev[1]:
                self._cal.setdefault(op, []).append((work_us, (c[0] - self._cal_prev[1][0]) / 1000))
            elif self._cal_prev and self._cal_prev[0] == op:
                self._cal.setdefault(op, []).append((work_us, None))
            self._cal_prev = (op, c)

    def calibrated(self, cold_us=None, cold_ratio=None):
        """The calibration burst is over: per kind of call, the shim's mean µs and the least CPU; and, from the
        first boot, how much slower the VM runs right after a call. Returns a clock read's shim µs."""
        with self.lock:
            for op, samples in self._cal.items():
                work = sorted(w for w, _ in samples)[:len(samples) * 9 // 10 or 1]  # less the preempted
                cpu = sorted(c for _, c in samples if c is not None)
                self.shim_us[op] = sum(work) / len(work)  # a mean: the VM's clock counts whole µs
                if cpu:
                    self.floor_us[op] = cpu[len(cpu) // 20]
            self._cal, self._cal_prev = {}, None
            if cold_ratio:
                global _host_cold
                self.cold = _host_cold = (cold_us or 0.0, cold_ratio)
            return self.shim_us.get(CLOCK_OP, 0.0)

    def warm(self, work_us):
        """µs of work as the VM would have done it with warm caches: max(w - cold µs, w / cold ratio).

        Every stretch of the firmware's work starts right after a call or a sleep, when the host has
        had the VM's core: its caches are cold and the next tens of µs run ~2-3x slower than the
        perf_bench loops the ESP32 factor was measured with (an ESP32 keeps its code in SRAM and
        a flash cache). A long stretch warms up: it loses the cold µs once."""
        if not self.cold:
            return work_us
        cold_us, ratio = self.cold
        return max(work_us - cold_us, work_us / ratio)

    def throttle(self):
        """Supervisor, every few ms: seconds to stop a VM that runs ahead of the board without making
        calls (code typed at the REPL, mpremote's raw REPL, a long compile), else 0."""
        with self.lock:
            now = time.monotonic_ns()
            if not self.paces or now - self._last_call < IDLE_NS:
                return 0.0
            self._bill(None, None, now)
            return self._pace(now, PAY_AT_US) / 1e6

    # -- the ledger --------------------------------------------------------------
    def _sample(self):
        return self._stat.read() if self._stat else None

    def _switch_us(self):
        """Kernel CPU per time the VM blocks and wakes: the least a round trip was seen to cost."""
        return self.floor_us.get(CLOCK_OP, min(self.floor_us.values(), default=0.0))

    def _bill(self, op, work_us, now):
        """Bill the firmware's work since the last call (op None: the throttle, mid-stretch)."""
        if self._sleep_until:  # a sleep cut short (Ctrl-C): the board only slept until now
            until, t_wake = self._sleep_until
            self._sleep_until = None
            if now < until:
                self.t = t_wake - (until - now) / 1000 * (self.speed or 1)
        if self._billing:
            self._last_call = now
            c = self._sample()
            cpu = None
            if c is not None and self._seg is not None:  # CPU less the kernel's share of every wake-up
                switches = c[1] - self._seg[1]
                cpu = (c[0] - self._seg[0]) / 1000 - switches * self._switch_us()
            if op is None:  # mid-stretch: what the kernel says so far (it may lag a running VM a little)
                used = self.warm(max(0.0, cpu or 0.0))
            else:  # the call's own wake-up is not in the stretch yet: one switch less, its overhead more
                used = max(0.0, work_us - self.shim_us.get(op, 0))
                if cpu is not None:
                    used = min(used, max(0.0, cpu + self._switch_us() - self.floor_us.get(op, 0)))
                used = max(0.0, self.warm(used))
            more = used - self._seg_billed
            if op is None:
                self._seg_billed = max(self._seg_billed, used)
            else:
                self._seg, self._seg_billed = c, 0.0
            if more > 0:
                us = more * self.cpu.at(self.mhz, self._gc)
                self.t += us
                self.work_us += more
                self.billed_us += us
            if op is not None and self._shown:
                cost, shown = self._shown
                self._shown = None
                self.t = max(self.t + cost, shown)
        if self.speed is None:
            self.t = max(self.t, (now - self._wall0) / 1000 - SLACK_US)

    def _pace(self, now, tolerance):
        """Wall µs to hold the VM back (0 if within `tolerance`)."""
        if self.speed is None:
            ahead = self.t - (now - self._wall0) / 1000
        elif not self.speed:
            return 0
        else:
            wall, t = self._anchor
            ahead = (wall - now) / 1000 + (self.t - t) / self.speed
            if ahead < -LAG_RESYNC_US:
                self._anchor = (now, self.t)
                ahead = 0
        if ahead <= tolerance:
            return 0
        self.paced_us += ahead
        return int(ahead)

    def figures(self):
        """What the clock has billed, for counters and benchmarks."""
        with self.lock:
            return {"cpu": self.cpu.name, "factor_now": round(self.cpu.at(self.mhz), 2), "mhz": self.mhz,
                    "work_ms": round(self.work_us / 1000, 1), "billed_ms": round(self.billed_us / 1000, 1),
                    "paced_ms": round(self.paced_us / 1000, 1),
                    "shim_us": {k: round(v, 2) for k, v in sorted(self.shim_us.items())},
                    "cold": {"us": round(self.cold[0], 1), "ratio": round(self.cold[1], 2)} if self.cold else None,
                    "call_cpu_floor_us": {k: round(v, 1) for k, v in sorted(self.floor_us.items())}}
