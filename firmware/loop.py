"""The fixed-rate control loop: sense, decide, actuate, report, listen -- once per tick.

Ticks are scheduled on deadlines with time.ticks_us (wraps at 2**30 on the ESP32).
The hot path allocates nothing (preallocated buffers, integer math), so the garbage
collector never stalls a tick that receives no command. What to command each tick
is the current mode's job; MODES is the table, a new mode is one more entry. Each
stage's time is kept (StageTimes) so that `stages` can say where a tick goes.
"""

import array
import binascii
import gc
import select
import sys
import time
from micropython import const

import machine
import config
import models
import programs
import protocol as P
import telemetry as T
import track
from commands import Commands
from feedback import Feedback
from imu import Mpu6050
from servo import Servo
from version import FIRMWARE_VERSION


class Idle:
    """Hold the last pulses, or go limp (robot.json `idle`, or `idle hold|limp`)."""

    name = "idle"
    flags = 0  # telemetry flags this mode raises

    def __init__(self, cfg):
        pass

    def enter(self, robot, args):
        policy = args[0] if args else robot.cfg["idle"]
        if policy not in ("hold", "limp") or len(args) > 1:
            raise ValueError("idle takes hold or limp")
        if policy == "limp":
            robot.go_limp()
        return {"mode": "idle", "policy": policy}

    def step(self, robot):
        pass


class Direct:
    """Follow the host's `set` pulses; hold when the host is silent for watchdog_ms."""

    name = "direct"

    def __init__(self, cfg):
        self.timeout_ms = cfg["watchdog_ms"]
        self.target = [None] * len(cfg["joints"])
        self.fed_ms = 0
        self.flags = 0  # T.F_WATCHDOG while tripped

    def enter(self, robot, args):
        if args:
            raise ValueError("direct takes no arguments")
        for j in range(len(self.target)):
            self.target[j] = robot.target[j]
        self.fed_ms = time.ticks_ms()
        self.flags = 0
        return {"mode": "direct", "watchdog_ms": self.timeout_ms}

    def setpoint(self, pulses):
        for j in range(len(pulses)):
            self.target[j] = pulses[j]
        self.fed_ms = time.ticks_ms()
        self.flags = 0

    def step(self, robot):
        if self.flags:
            return
        if time.ticks_diff(time.ticks_ms(), self.fed_ms) > self.timeout_ms:
            self.flags = T.F_WATCHDOG
            robot.port.log(P.LOG_WARN, "watchdog: no command for %d ms, holding" % self.timeout_ms)
            return
        t = robot.target
        for j in range(len(t)):
            if self.target[j] is not None:
                t[j] = self.target[j]


class Program:
    """Run an excitation program from programs.py, then idle (hold) with a LOG "program done"."""

    name = "program"
    flags = 0

    def __init__(self, cfg):
        self.params = None
        self.gens = ()
        self.k = self.n = 0

    def enter(self, robot, args):
        if not args:
            raise ValueError("program <name> [key=value ...]; programs: %s" % ", ".join(sorted(programs.PROGRAMS)))
        params = programs.resolve(args[0], programs.key_values(args[1:], "program"), len(robot.servos))
        self.n, self.gens = programs.build(params, robot.cfg["joints"], robot.rate_hz)
        self.params = params
        self.k = 0
        return {"mode": "program", "program": params, "rate_hz": robot.rate_hz, "ticks": self.n}

    def step(self, robot):
        gens = self.gens
        t = robot.target
        for j in range(len(gens)):
            g = gens[j]
            if g is not None:
                t[j] = g.step()
        self.k += 1
        if self.k >= self.n:
            robot.enter("idle", ("hold",))
            robot.port.log(P.LOG_INFO, "program done: %s" % self.params["name"])


RESYNC_US = 50000
MODES = (Idle, Direct, Program, track.Track)  # telemetry `mode` = index here
STAGES = ("sense", "decide", "actuate", "report", "listen")  # a tick's stages, in order
_MASK = const(0x3FFFFFFF)  # ticks period 2**30: a stage's time is (end - start) & _MASK
_HALVE_AT = const(32768)


class StageTimes:
    """Where ticks go: per stage (and the whole tick, last) the total, the longest and the count of
    ticks since the last take(). marks[i] is when stage i began, marks[5] when the tick ended.
    Allocation-free; totals stay small ints (halved with the count past _HALVE_AT ticks)."""

    def __init__(self):
        self.marks = array.array("i", [0] * 6)
        self.total = array.array("i", [0] * 6)
        self.longest = array.array("i", [0] * 6)
        self.n = 0

    def add(self):
        m, total, longest = self.marks, self.total, self.longest
        for i in range(5):
            d = (m[i + 1] - m[i]) & _MASK
            total[i] += d
            if d > longest[i]:
                longest[i] = d
        d = (m[5] - m[0]) & _MASK
        total[5] += d
        if d > longest[5]:
            longest[5] = d
        self.n += 1
        if self.n >= _HALVE_AT:
            for i in range(6):
                total[i] >>= 1
            self.n >>= 1

    def take(self):
        """{stages, ticks, mean_us, max_us} since the last take(), and start again."""
        n = self.n or 1
        out = {"stages": list(STAGES) + ["tick"], "ticks": self.n,
               "mean_us": [round(t / n) for t in self.total], "max_us": list(self.longest)}
        for i in range(6):
            self.total[i] = self.longest[i] = 0
        self.n = 0
        return out


class Gen0:
    """The robot: its drivers, mode, counters and the tick; talks over stdin/stdout."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.started_ms = time.ticks_ms()
        self.port = T.Port(sys.stdout.buffer, cfg["link"]["baud"])
        self.servos = [Servo(j) for j in cfg["joints"]]
        self.feedbacks = [Feedback(j) for j in cfg["joints"]]
        self.imu = Mpu6050(cfg.get("imu"))
        self.telemetry = T.Telemetry(cfg)
        self.modes = [m(cfg) for m in MODES]
        self.mode_names = [m.name for m in self.modes]
        self.switch(self.mode_named("idle"))
        self.target = [None] * len(self.servos)  # pulse per joint; None = no pulses (limp)
        self.target_cdeg = array.array("i", [0] * len(self.servos))  # track mode's targets, 0.01 deg
        self.latched = 0  # flags held until the next telemetry frame
        self.models = models.Store(cfg)
        self.models.boot()
        self.rate_hz = self.period_us = 0
        self.set_rate(cfg["loop"]["rate_hz"])
        self.telemetry_every = cfg["loop"]["telemetry_every"]
        self.max_rx = cfg["loop"]["max_rx_bytes_per_tick"]
        self.ticks = self.overruns = self.busy_us = self.rx_bytes = 0
        self.since_frame = 0
        self.stages = StageTimes()
        self.commands = Commands(self)
        self.stdin = sys.stdin.buffer
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)
        self.rx_byte = bytearray(1)
        self.rx_buf = bytearray(P.RX_RING)

    # -- modes ---------------------------------------------------------------
    def mode_named(self, name):
        """The mode object called name (loop.MODES); ValueError when there is none. Modes are found by
        name, never by their index (telemetry's `mode` number)."""
        return self.modes[self.mode_names.index(name)]

    def enter(self, name, args):
        mode = self.mode_named(name)
        data = mode.enter(self, args)  # raises before switching if args are bad
        self.switch(mode)
        self.clear_targets()
        return data

    def switch(self, mode):
        """Make mode (one of self.modes) the current one; telemetry's `mode` is its index."""
        self.mode, self.mode_id = mode, self.modes.index(mode)

    def clear_targets(self):
        for j in range(len(self.target_cdeg)):
            self.target_cdeg[j] = 0

    def go_limp(self):
        for j in range(len(self.servos)):
            self.servos[j].limp()
            self.target[j] = None

    def limp(self):
        """True while some joint gets no pulses."""
        for s in self.servos:
            if not s.us:
                return True
        return False

    def safe(self):
        """Servos safe: idle, holding or limp as robot.json says."""
        self.switch(self.mode_named("idle"))
        self.clear_targets()
        if self.cfg["idle"] == "limp":
            self.go_limp()

    def set_rate(self, hz):
        self.rate_hz = hz
        self.period_us = 1000000 // hz

    # -- hello ---------------------------------------------------------------
    def info(self):
        impl = sys.implementation
        return {
            "fw": FIRMWARE_VERSION, "proto": P.PROTOCOL_VERSION,
            "board_id": binascii.hexlify(machine.unique_id()).decode(),
            "micropython": list(impl.version[:3]), "mpy": getattr(impl, "_mpy", 0), "platform": sys.platform,
            "robot": self.cfg, "rate_hz": self.rate_hz, "telemetry_every": self.telemetry_every,
            "ticks_period": P.TICKS_PERIOD, "modes": self.mode_names, "flags": T.FLAGS,
            "programs": {k: [list(p) for p in v] for k, v in programs.PROGRAMS.items()},
            "track": {"trajectories": {k: [list(p) for p in v] for k, v in track.TRAJECTORIES.items()},
                      "controllers": list(track.CONTROLLERS)},
            "model": self.models.hex_id, "imu": {"ok": self.imu.ok, "error": self.imu.error},
            "endian": T.ENDIAN, "schema": self.telemetry.fields,
        }

    def send_hello(self):
        """The hello; on a heap too fragmented for its ~3.7 KB of JSON, collect and retry, then say so. A hello
        past a frame's 4 KB (a long robot description, a long IMU error) goes without the program and trajectory
        lists, which the host also has from the firmware's files: the board never stops over its hello."""
        info = self.info()
        for attempt in range(3):
            try:
                self.port.hello(info)
                return
            except MemoryError:
                gc.collect()
            except ValueError:  # more than MAX_PAYLOAD
                if "programs" not in info:
                    break
                info.pop("programs")
                info.pop("track")
                self.port.log(P.LOG_WARN, "hello too long for one frame: sent without its program and trajectory lists")
        self.port.log(P.LOG_ERROR, "no hello sent (%d bytes free): `reset` defragments the heap, a shorter "
                      "robot.json fits the frame" % gc.mem_free())

    # -- the tick ------------------------------------------------------------
    def tick(self, t_us):
        """One loop iteration, stamped t_us (its start); stage start times go into stages.marks."""
        marks = self.stages.marks
        marks[0] = t_us
        for f in self.feedbacks:
            f.read()
        imu = self.imu
        if imu.ok:
            imu.read()
        marks[1] = time.ticks_us()
        self.mode.step(self)
        marks[2] = time.ticks_us()
        target = self.target
        servos = self.servos
        for j in range(len(servos)):
            us = target[j]
            if us is not None and servos[j].write(us) != us:
                self.latched |= T.F_CLAMPED
        marks[3] = now = time.ticks_us()
        self.ticks = self.ticks + 1 if self.ticks < _MASK else 0  # counters wrap at 2**30: small ints on an ESP32
        every = self.telemetry_every
        if every:
            self.since_frame += 1
            if self.since_frame >= every:
                self.since_frame = 0
                flags = self.latched
                if self.limp():
                    flags |= T.F_LIMP
                if not imu.ok:
                    flags |= T.F_IMU_MISSING
                flags |= self.mode.flags
                self.latched = 0
                self.telemetry.emit(self.port, t_us, self.busy_us, self.overruns, self.mode_id, flags,
                                    self.servos, self.feedbacks, self.target_cdeg, imu.buf, self.models.short_id)
        self.port.pump(now)
        marks[4] = time.ticks_us()
        self.receive()

    def receive(self):
        """Waiting bytes into the command reader, never blocking: up to max_rx_bytes_per_tick, or a whole
        stdin ring's worth while a transfer streams (its records come at the link's full rate, PROTOCOL.md
        "Records"). An ESP32's stdin has no count of waiting bytes and a longer readinto blocks until it
        is full, so each byte is one poll and one 1-byte read. The acks of what ran leave now, not a tick
        later: the host's window moves on sooner."""
        n = 0
        limit = P.RX_RING if self.commands.transfer else self.max_rx
        one = self.rx_byte
        buf = self.rx_buf
        poller = self.poller
        stdin = self.stdin
        pollin = select.POLLIN
        while n < limit:
            ready = 0
            for ev in poller.ipoll(0):  # method calls: a bound method taken out would allocate every tick
                ready = ev[1] & pollin
            if not ready or stdin.readinto(one) != 1:
                break
            buf[n] = one[0]
            n += 1
        if n:
            r = self.rx_bytes - (_MASK - n) - 1
            self.rx_bytes = r if r >= 0 else r + _MASK + 1
            self.commands.feed(buf, n)
            self.port.pump(time.ticks_us())

    def rx_window(self):
        """Bytes of transfer records the host may have sent and not seen acked (PROTOCOL.md "Records"):
        two lines while a tick's reads keep up with the link (what arrives in one tick fills at most half
        the stdin ring), else one ring: unacked bytes are never more than it holds."""
        baud = self.cfg["link"]["baud"]
        per_tick = baud // 10 * self.period_us // 1000000
        return 2 * P.MAX_LINE if 2 * per_tick <= P.RX_RING else P.RX_RING

    # -- the loop ------------------------------------------------------------
    def run(self, max_ticks=0):
        """Tick on deadlines until interrupted (or max_ticks ticks: benchmarks and tests).

        A tick that ends after the next deadline counts an overrun; the following ticks
        start at once until the schedule is caught up, so a hiccup (a GC pause, a busy host
        OS under the virtual Gen0) costs no ticks. Behind by more than RESYNC_US (a hello
        frame draining at 115200 baud, a flash write): the missed ticks are dropped and the
        schedule restarts from now.
        """
        ticks_us = time.ticks_us
        ticks_add = time.ticks_add
        ticks_diff = time.ticks_diff
        sleep_us = time.sleep_us
        deadline = ticks_us()
        n = 0
        while True:
            wait = ticks_diff(deadline, ticks_us())
            if wait > 0:
                sleep_us(wait)
            t0 = ticks_us()
            self.tick(t0)
            end = ticks_us()
            self.busy_us = ticks_diff(end, t0)
            self.stages.marks[5] = end
            self.stages.add()
            deadline = ticks_add(deadline, self.period_us)
            late = ticks_diff(end, deadline)
            if late > 0:
                self.overruns = self.overruns + 1 if self.overruns < _MASK else 0
                if late > RESYNC_US:
                    deadline = end
            n += 1
            if n == max_ticks:
                return


def run():
    """Entry point (main.py): start the robot, stream until Ctrl-C or an error, leave the servos safe."""
    robot = Gen0(config.load())
    gc.collect()
    try:
        robot.send_hello()
        if robot.imu.error:
            robot.port.log(P.LOG_WARN, "imu: " + robot.imu.error)
        if robot.models.note:
            robot.port.log(P.LOG_WARN, "model: " + robot.models.note)
        robot.run()
    except KeyboardInterrupt:
        robot.safe()
        robot.port.flush()
        raise
    except Exception as e:
        robot.safe()
        robot.port.log(P.LOG_ERROR, "firmware stopped: %s: %s" % (type(e).__name__, e))
        robot.port.flush()
        raise
