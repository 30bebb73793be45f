"""Runs first in the virtual Gen0's VM, doing what the ESP32 port's main.c does at every boot.

Installs the shims as `machine`/`time` before anything can import the built-ins (and
`os`/`sys` that answer uname(), platform and implementation as an ESP32 does),
mounts the flash directory at / (so '/robot.json', '/lib' and mpremote's paths
stay on the board), runs boot.py, then main.py unless this boot goes to the raw
REPL, and leaves the VM's own REPL to the user with a namespace as bare as an
ESP32's. Before it says it is ready, it makes a burst of each kind of bus call
flagged as calibration: the supervisor measures what the emulation itself costs
per call and does not bill it as ESP32 time (host/sim/clock.py). Arguments (from
host/sim/vm.py): bus read fd, bus write fd, 'friendly' or 'raw', reset cause,
RTC µs, unique id (hex), CPU MHz, calibrate (0/1), the CPU model's factor and a
ticks_us call's cost (board µs x 1024, for clock reads answered in the VM).
"""


class VfsLfs2:
    """The flash directory as the ESP32's littlefs shows it: ilistdir gives sizes, statvfs a 2 MiB partition."""

    BLOCK = 4096
    BLOCKS = 512

    def __init__(self, fs):
        self.fs = fs

    def __repr__(self):
        return "<VfsLfs2>"  # what mpremote df prints, as for the port's C type

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def ilistdir(self, path):
        base = path.rstrip("/") + "/" if path not in ("", ".") else ""
        for name, kind, inode in self.fs.ilistdir(path):
            yield name, kind, inode, 0 if kind == 0x4000 else self.fs.stat(base + name)[6]

    def statvfs(self, path):
        used = self._used("/")
        free = max(0, self.BLOCKS - used)
        return (self.BLOCK, self.BLOCK, self.BLOCKS, free, free, 0, 0, 0, 0, 255)

    def _used(self, path):
        blocks = 1
        for name, kind, inode, size in self.ilistdir(path):
            blocks += self._used(path + name + "/") if kind == 0x4000 else 1 + (size + self.BLOCK - 1) // self.BLOCK
        return blocks

    def open(self, path, mode):
        return self.fs.open(path, mode)

    def stat(self, path):
        return self.fs.stat(path)

    def chdir(self, path):
        return self.fs.chdir(path)

    def getcwd(self):
        return self.fs.getcwd()

    def mkdir(self, path):
        return self.fs.mkdir(path)

    def remove(self, path):
        return self.fs.remove(path)

    def rename(self, old, new):
        return self.fs.rename(old, new)

    def rmdir(self, path):
        return self.fs.rmdir(path)


def builtin(name, real, names):
    """A built-in module as the ESP32 port has it: a copy of the VM's own, some names answered differently.

    A real module object (a fresh import of the empty espmodule.py), so that it prints as <module 'os'>.
    """
    import sys

    import espmodule

    del sys.modules["espmodule"]
    space = espmodule.__dict__
    for key in dir(real):
        if not key.startswith("__"):
            space[key] = getattr(real, key)
    space.update(names)
    space["__name__"] = name
    del space["__file__"]
    return espmodule


CALIBRATION_CALLS = 48  # per kind of call
COLD_RUNS = 16  # stretches of each size timed after a tick-long sleep (once per host process)
COLD_SLEEP_US = 6000


class _Stretch:
    """A firmware-like stretch of work between two calls (methods, attributes, arrays, struct, slices):
    timed hot, back to back, and cold, after a sleep, to learn how much slower the VM runs code
    whose caches the host took away meanwhile (an ESP32's code runs from SRAM and a flash cache it keeps).
    This one is short, like the firmware's between two pin calls (~5 µs hot)."""

    def __init__(self, struct):
        import array

        self.pack_into = struct.pack_into
        self.buf = bytearray(64)
        self.view = memoryview(self.buf)[:40]
        self.out = bytearray(256)
        self.vals = array.array("i", [3, 1, 4, 1, 5, 9, 2, 6])
        self.table = {"a": 1, "b": 2, "c": 3}
        self.items = [[i, -i] for i in range(4)]
        self.n = self.at = 0

    def part(self, i):
        return (self.vals[i & 7] * 3 + self.table.get("a", 0)) >> 1

    def clamp(self, v, lo, hi):
        return lo if v < lo else hi if v > hi else v

    def frame(self, s):
        self.pack_into("<HHhhB", self.buf, 0, s & 0xFFFF, self.n & 0xFFFF, -s, s, 7)
        for j in range(4):
            self.pack_into("<hh", self.buf, 10 + 4 * j, self.items[j][0], self.clamp(self.items[j][1], -2, 2))
        b = self.buf
        b[30] = b[1]
        b[31] = b[0]
        return 40

    def run(self):
        s = 0
        for i in range(8):
            s += self.part(i)
        n = self.frame(s)
        at = self.at
        self.out[at:at + n] = self.view
        self.at = 0 if at > 150 else at + n
        self.n = self.n + 1 if self.buf.find(b"\x7e", 0, 40) < 0 and self.buf.find(b"\x7d", 0, 40) < 0 else 0
        return s


class _LongStretch:
    """Four short stretches and a walk over 8 KB of data: a whole tick's work (~25 µs hot), whose
    footprint decides how many µs a cold start costs in all."""

    def __init__(self, struct):
        import array

        self.parts = [_Stretch(struct) for i in range(4)]
        self.blob = bytearray(8192)
        self.arr = array.array("i", range(256))
        self.table = {"k%d" % i: i for i in range(32)}

    def run(self):
        s = 0
        for p in self.parts:
            s += p.run()
        b = self.blob
        for i in range(0, 8192, 256):
            s += b[i]
        for i in range(0, 256, 16):
            s += self.arr[i]
        return s + self.table.get("k7", 0)


def _hot_cold(bus, native, w):
    """(µs of w.run() back to back, µs right after a tick-long sleep) x 100: the best and the median."""
    hot = 1 << 30
    for batch in range(5):
        t = native.ticks_us()
        for i in range(16):
            w.run()
        hot = min(hot, native.ticks_diff(native.ticks_us(), t) * 100 // 16)
    cold = []
    for i in range(COLD_RUNS):
        bus.call(bus.SLEEP, 0, 0, COLD_SLEEP_US, 0)  # a calibration sleep: really waited, the board's clock untouched
        t = native.ticks_us()
        w.run()
        cold.append(native.ticks_diff(native.ticks_us(), t) * 100)
    cold.sort()
    return max(hot, 1), cold[len(cold) // 2]


def _cold(bus, native, struct):
    """(µs a tick-sized stretch loses to cold caches after a sleep, how many times slower a short one runs) x 100."""
    hot, cold = _hot_cold(bus, native, _Stretch(struct))
    ratio = max(100, cold * 100 // hot)
    hot, cold = _hot_cold(bus, native, _LongStretch(struct))
    return max(0, cold - hot), ratio


def _calibrate(bus, machine, time, cold):
    """Bursts of the calls the firmware makes, through the same code, answered without touching the board;
    and (cold) how the VM runs after a sleep. The supervisor keeps what it learns."""
    bus.cal = bus.CAL
    penalty = ratio = 0
    try:
        if cold:
            import struct

            penalty, ratio = _cold(bus, bus.time, struct)
        pin = machine.Pin(4)
        adc = machine.ADC(machine.Pin(39))
        i2c = machine.I2C(0)
        pwm = machine.PWM(machine.Pin(4), freq=50, duty_ns=1000000)
        buf = bytearray(14)
        for i in range(CALIBRATION_CALLS):
            time.ticks_us()
        for i in range(CALIBRATION_CALLS):
            time.sleep_us(0)
        for i in range(CALIBRATION_CALLS):
            adc.read_u16()
        for i in range(CALIBRATION_CALLS):
            i2c.readfrom_mem_into(0x68, 0x3B, buf)
        for i in range(CALIBRATION_CALLS):
            pwm.duty_ns(1000000 + i)
        for i in range(CALIBRATION_CALLS):
            pin.value()
    finally:
        bus.cal = 0
    bus.set_shim(bus.call(bus.CAL_DONE, 0, 0, penalty, ratio))  # the supervisor says what a call's shim costs
    if cold:
        bus.set_cold(penalty, ratio)


def _boot():
    import gc
    import os
    import sys

    import gen0bus as bus
    import vtime
    import machine

    from collections import namedtuple

    me = sys.argv[0]
    rfd, wfd, mode, cause, rtc, uid, mhz, calibrate, factor_q, read_q, cold_us, cold_ratio = sys.argv[1:]
    sys.argv.clear()
    bus.init(int(rfd), int(wfd), int(factor_q), int(read_q))
    bus.set_cold(int(cold_us), int(cold_ratio))
    vtime._init(int(rtc), int(mhz))
    machine._init(bytes.fromhex(uid), int(cause), int(mhz))
    if calibrate != "0":
        _calibrate(bus, machine, vtime, calibrate == "2")
    sys.modules["time"] = sys.modules["utime"] = sys.modules.pop("vtime")
    sys.modules["umachine"] = machine
    impl = sys.implementation
    release = "%d.%d.%d" % impl.version[:3]
    built = sys.version.split(" on ")[-1]
    board = "Generic ESP32 module with ESP32"
    uname = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))(
        "esp32", "esp32", release, "v%s on %s" % (release, built), board)
    esp_impl = namedtuple("implementation", ("name", "version", "_machine", "_mpy", "_build"))(
        impl.name, impl.version[:3] + ("",), board, impl._mpy, "ESP32_GENERIC")  # a release build
    sys.modules["os"] = sys.modules["uos"] = builtin("os", os, {"uname": lambda: uname})
    sys.modules["sys"] = sys.modules["usys"] = builtin("sys", sys, {
        "platform": "esp32", "implementation": esp_impl, "version": "3.4.0; MicroPython v%s on %s" % (release, built),
        "maxsize": 2147483647, "stdin": bus.Stdio(sys.stdin, sys.stdin.buffer),
        "stdout": bus.Stdio(sys.stdout, sys.stdout.buffer)})
    import select

    sys.modules["select"] = sys.modules["uselect"] = builtin("select", select, {"poll": lambda: bus.Stdio(select.poll())})

    def collect():  # the supervisor bills the collector's CPU at the ESP32's GC factor
        bus.call(bus.GC, 0, 0, 1, 0)
        try:
            gc.collect()
        finally:
            bus.call(bus.GC, 0, 0, 0, 0)

    sys.modules["gc"] = builtin("gc", gc, {"collect": collect})
    import esp
    import esp32
    import network

    for shim in (machine, vtime, esp, esp32, network):  # print as built-ins do: no host path
        del shim.__dict__["__file__"]
    vtime.__dict__["__name__"] = "time"
    del sys.modules["gen0bus"]  # not importable, as on a board; tests reach it as machine.bus
    bus.gc = gc  # the VM's own collector, for tests that time it
    flash = os.getcwd()
    os.umount("/")
    os.mount(VfsLfs2(os.VfsPosix(flash)), "/")
    sys.path[:] = ["", ".frozen", "/lib"]
    bus.send(bus.READY)

    def run(name):
        """execfile like pyexec_file: False if it raised; SystemExit soft-resets, as on the ESP32."""
        try:
            os.stat(name)
        except OSError:
            return True
        try:
            execfile(name)
            return True
        except SystemExit:
            machine.soft_reset()
        except BaseException as e:
            try:
                import io

                text = io.StringIO()
                sys.print_exception(e, text)
                mine = '  File "%s"' % me
                print("\n".join(l for l in text.getvalue().split("\n") if not l.startswith(mine)), end="")
            except MemoryError:
                sys.print_exception(e)
            return False

    if run("boot.py") and mode == "friendly":
        run("main.py")
    gc.collect()


_boot()
del _boot, _calibrate, _cold, _hot_cold, _Stretch, _LongStretch, CALIBRATION_CALLS, COLD_RUNS, COLD_SLEEP_US
del VfsLfs2, builtin, __file__
