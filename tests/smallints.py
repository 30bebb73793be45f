"""Small-int checker: runs the firmware under CPython and flags every int that an ESP32 would box.

On the ESP32 a MicroPython "small int" is 31 bits signed: a value outside
[-2**30, 2**30 - 1] is a heap-allocated big int (an allocation, and slow). The unix VM the
other tests use has 63-bit small ints, so it never notices. This module loads the firmware
modules from firmware/ into private module objects (not sys.modules), rewriting their AST so
that the result of every arithmetic BinOp / UnaryOp (- and ~), the target of every AugAssign,
and the result of every call of a function that is not firmware Python (binascii.crc32,
time.ticks_*, int(), struct.unpack*, read_u16, ...) goes through a check that records
(file, function, line, expression, value) when the value is an int outside that range.
Functions decorated @micropython.viper / @micropython.native are left alone (viper words wrap
at 32 bits instead of allocating); so is the viper kernel that mlp.py compiles with exec(),
which runs here as plain Python. The plain (non-viper) sources mlp.py exec()s are instrumented.

The firmware sees CPython stand-ins for the MicroPython-only modules it imports:
`micropython`, `machine` (Pin, PWM, ADC, I2C with plausible, full-range readings), `time` with
the ESP32's semantics on a fake clock (ticks_us/ticks_ms wrap at 2**30, ticks_diff/ticks_add
with that period, sleep_us advances the clock, every clock read costs a few µs, every stdout
byte its link time), `select.poll` on an in-memory stdin, `sys` whose stdout.buffer captures
the frames, and `gc`. Its other imports (struct, binascii, json, array, os, errno) are CPython's.

Pieces:
    Checker()                  one firmware instance with its fake board; .records after a run
    Checker.robot(...)         a loop.Gen0 on a temporary flash folder (robot.json, model.bin)
    Checker.run(robot, n, commands={tick: [line bytes]})  ticks through Gen0.run, stdin fed per tick
    Checker.snippet(source)    instrument and exec a piece of code (the checker's self-test)
    scenarios() / run_scenarios()   every mode, program, trajectory and controller
    `python -m tests.smallints` prints what run_scenarios() finds.

A record's phase: "boot" (imports, Gen0()), "command" (inside commands.Commands.run: a command
being executed, its ack), "tick" (anything else during Gen0.run: the hot path, including reading
command bytes and lines), "harness" (code the scenario called directly).
"""

import ast
import binascii
import builtins
import contextlib
import json
import os
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
ROBOT = json.loads((ROOT / "hardware" / "gen0.json").read_text())
MODEL_BLOB = ROOT / "models" / "gen0-default" / "model.bin"

SMALL_MIN = -(1 << 30)
SMALL_MAX = (1 << 30) - 1
TICKS_PERIOD = 1 << 30
TICKS_MASK = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1

# Firmware modules the hook loads (instrumented) when a firmware module imports them.
FIRMWARE_MODULES = sorted(p.stem for p in FIRMWARE.glob("*.py") if p.stem not in ("__init__", "main", "boot"))
VIPER_DECORATORS = ("viper", "native")

_CHECK = "_si_v"  # check(site, value) -> value
_CALL = "_si_c"  # call(site, f) -> f, or f wrapped so its result is checked


# -- instrumentation -------------------------------------------------------------------------------

class Site:
    __slots__ = ("id", "file", "line", "func", "expr", "kind")

    def __init__(self, id, file, line, func, expr, kind):
        self.id, self.file, self.line, self.func, self.expr, self.kind = id, file, line, func, expr, kind

    def key(self):
        """What an allow-list entry names: stable when lines move."""
        return self.file, self.func, self.expr

    def __repr__(self):
        return "%s:%d %s: %s" % (self.file, self.line, self.func, self.expr)


SITES = []  # every instrumented expression, indexed by the id compiled into the code


def _is_literal(node):
    """Only literals: folded at compile time by MicroPython (a constant object, no allocation at run time)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.BinOp):
        return _is_literal(node.left) and _is_literal(node.right)
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    return False


def _is_viper(fn):
    for d in fn.decorator_list:
        if isinstance(d, ast.Attribute) and d.attr in VIPER_DECORATORS:
            return True
        if isinstance(d, ast.Name) and d.id in VIPER_DECORATORS:
            return True
    return False


def _load_copy(target):
    """The AugAssign target as an expression that reads it back."""
    node = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(node, target)


class _Instrument(ast.NodeTransformer):
    def __init__(self, file, source):
        self.file = file
        self.lines = source.splitlines()
        self.scope = []

    def _text(self, node):
        """The node's source text (ast.get_source_segment splits the whole source at every call)."""
        try:
            l0, l1 = node.lineno - 1, node.end_lineno - 1
            if l0 == l1:
                return self.lines[l0].encode()[node.col_offset:node.end_col_offset].decode()
            parts = [self.lines[l0].encode()[node.col_offset:].decode()] + self.lines[l0 + 1:l1]
            return "\n".join(parts + [self.lines[l1].encode()[:node.end_col_offset].decode()])
        except (AttributeError, IndexError, TypeError, UnicodeDecodeError):
            return ast.unparse(node)

    def _site(self, node, kind, text=None):
        if text is None:
            text = self._text(node)
        text = " ".join(text.split())
        if len(text) > 90:
            text = text[:87] + "..."
        site = Site(len(SITES), self.file, node.lineno, ".".join(self.scope) or "<module>", text, kind)
        SITES.append(site)
        return site.id

    def _wrap(self, node, kind):
        sid = self._site(node, kind)
        self.generic_visit(node)
        call = ast.Call(ast.Name(_CHECK, ast.Load()), [ast.Constant(sid), node], [])
        return ast.copy_location(call, node)

    def _scoped(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()
        return node

    def visit_FunctionDef(self, node):
        if _is_viper(node):
            return node  # native machine words: out of scope, left as written
        return self._scoped(node)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = _scoped

    def visit_BinOp(self, node):
        if _is_literal(node):
            return node
        return self._wrap(node, "binop")

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not) or _is_literal(node):
            self.generic_visit(node)
            return node
        return self._wrap(node, "unary")

    def visit_AugAssign(self, node):
        sid = self._site(node, "augassign")
        self.generic_visit(node)
        check = ast.Expr(ast.Call(ast.Name(_CHECK, ast.Load()), [ast.Constant(sid), _load_copy(node.target)], []))
        return [node, ast.copy_location(check, node)]

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "super":
            self.generic_visit(node)
            return node
        sid = self._site(node, "call")
        self.generic_visit(node)
        node.func = ast.copy_location(ast.Call(ast.Name(_CALL, ast.Load()), [ast.Constant(sid), node.func], []), node.func)
        return node


_CODE_CACHE = {}


def instrument(source, file):
    """Code object of `source` with every arithmetic result and foreign call result checked."""
    key = (file, source)
    code = _CODE_CACHE.get(key)
    if code is None:
        tree = _Instrument(file, source).visit(ast.parse(source))
        ast.fix_missing_locations(tree)
        code = _CODE_CACHE[key] = compile(tree, file, "exec")
    return code


# -- records ---------------------------------------------------------------------------------------

class Record:
    """Everything seen at one site: how often, in which phases and ticks, the extreme values."""

    __slots__ = ("site", "count", "phases", "ticks", "lo", "hi", "stack", "max_per_tick", "_tick", "_in_tick")

    def __init__(self, site):
        self.site = site
        self.count = 0
        self.phases = {}
        self.ticks = 0  # distinct ticks it happened in
        self.lo = self.hi = None
        self.stack = None
        self.max_per_tick = 0
        self._tick = None
        self._in_tick = 0

    def add(self, value, phase, tick, stack):
        self.count += 1
        self.phases[phase] = self.phases.get(phase, 0) + 1
        if self.lo is None or value < self.lo:
            self.lo = value
        if self.hi is None or value > self.hi:
            self.hi = value
        if self.stack is None:
            self.stack = stack
        if tick is not None:
            if tick != self._tick:
                self._tick, self._in_tick = tick, 0
                self.ticks += 1
            self._in_tick += 1
            self.max_per_tick = max(self.max_per_tick, self._in_tick)

    def sample(self):
        return self.hi if self.hi is not None and self.hi > SMALL_MAX else self.lo

    def merge(self, other):
        self.count += other.count
        for k, v in other.phases.items():
            self.phases[k] = self.phases.get(k, 0) + v
        self.ticks += other.ticks
        self.max_per_tick = max(self.max_per_tick, other.max_per_tick)
        self.lo = other.lo if self.lo is None else min(self.lo, other.lo)
        self.hi = other.hi if self.hi is None else max(self.hi, other.hi)
        if self.stack is None:
            self.stack = other.stack

    def __repr__(self):
        return "%r = %d (%d times, phases %s)" % (self.site, self.sample(), self.count, self.phases)


def big(v):
    return v.__class__ is int and not SMALL_MIN <= v <= SMALL_MAX


# -- the fake ESP32 --------------------------------------------------------------------------------

class Clock:
    """The board's µs since power-on (unbounded here); ESP32 time functions are views of it."""

    def __init__(self, start_us=0, read_cost_us=23):
        self.us = start_us
        self.read_cost_us = read_cost_us  # each clock read: some work was done since the last one

    def module(self):
        clock = self
        m = types.ModuleType("time")

        def ticks_us():
            clock.us += clock.read_cost_us
            return clock.us & TICKS_MASK

        def ticks_ms():
            clock.us += clock.read_cost_us
            return (clock.us // 1000) & TICKS_MASK

        def ticks_cpu():
            clock.us += clock.read_cost_us
            return (clock.us * 240) & TICKS_MASK

        def ticks_diff(end, start):
            return ((end - start + TICKS_HALF) & TICKS_MASK) - TICKS_HALF

        def ticks_add(ticks, delta):
            if not -TICKS_HALF < delta < TICKS_HALF:
                raise OverflowError("ticks interval overflow")
            return (ticks + delta) & TICKS_MASK

        def sleep_us(us):
            if us > 0:
                clock.us += us

        def sleep_ms(ms):
            sleep_us(ms * 1000)

        def sleep(s):
            sleep_us(int(s * 1000000))

        def time():
            return clock.us // 1000000

        for f in (ticks_us, ticks_ms, ticks_cpu, ticks_diff, ticks_add, sleep_us, sleep_ms, sleep, time):
            setattr(m, f.__name__, f)
        return m


def _micropython_module():
    m = types.ModuleType("micropython")
    m.const = lambda x: x
    m.viper = m.native = lambda f: f
    m.kbd_intr = m.alloc_emergency_exception_buf = lambda *a: None
    m.opt_level = lambda *a: 0
    m.mem_info = m.qstr_info = lambda *a: None
    m.schedule = lambda f, a: f(a)
    return m


def _gc_module():
    m = types.ModuleType("gc")
    m.collect = m.enable = m.disable = lambda: None
    m.mem_free = lambda: 60000
    m.mem_alloc = lambda: 50000
    m.threshold = lambda *a: -1
    m.isenabled = lambda: True
    return m


class Board:
    """machine's peripherals: readings sweep their whole ranges (extremes included), deterministically."""

    def __init__(self):
        self.adc_reads = 0
        self.imu_reads = 0
        self.pwm = {}  # pin -> duty_ns
        self.imu_present = True

    def adc_value(self, pin):
        n = self.adc_reads
        self.adc_reads += 1
        if n % 97 == 0:
            return 0
        if n % 89 == 0:
            return 65535
        return (pin * 7919 + n * 4099) & 0xFFFF

    def imu_burst(self, buf):
        n = self.imu_reads
        self.imu_reads += 1
        for i in range(0, len(buf), 2):
            if n % 53 == 0:
                v = 0x8000  # -32768
            elif n % 47 == 0:
                v = 0x7FFF
            else:
                v = (n * 2654435761 + i * 40503) & 0xFFFF
            buf[i] = v >> 8
            if i + 1 < len(buf):
                buf[i + 1] = v & 0xFF

    def module(self):
        board = self
        m = types.ModuleType("machine")

        class Pin:
            IN, OUT = 1, 3

            def __init__(self, n, *a, **k):
                self.n = n

        class PWM:
            def __init__(self, pin, freq=50, duty_ns=0):
                self.pin = pin
                board.pwm[pin.n] = duty_ns

            def duty_ns(self, ns=None):
                if ns is None:
                    return board.pwm[self.pin.n]
                board.pwm[self.pin.n] = ns

            def deinit(self):
                board.pwm.pop(self.pin.n, None)

        class ADC:
            ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3

            def __init__(self, pin, *a, **k):
                self.pin = pin

            def atten(self, a):
                pass

            def read_u16(self):
                return board.adc_value(self.pin.n)

        class I2C:
            def __init__(self, i, scl=None, sda=None, freq=400000):
                self.regs = bytearray(128)
                self.regs[0x75] = 0x68

            def readfrom_mem(self, addr, reg, n):
                if not board.imu_present:
                    raise OSError(19)
                return bytes(self.regs[reg:reg + n])

            def readfrom_mem_into(self, addr, reg, buf):
                if not board.imu_present:
                    raise OSError(19)
                if reg == 0x3B:
                    board.imu_burst(buf)
                else:
                    buf[:] = self.regs[reg:reg + len(buf)]

            def writeto_mem(self, addr, reg, data):
                self.regs[reg] = data[0]

        def reset():
            raise SystemExit("machine.reset()")

        m.Pin, m.PWM, m.ADC, m.I2C = Pin, PWM, ADC, I2C
        m.unique_id = lambda: b"\xde\xad\xbe\xef"
        m.freq = lambda *a: 240000000
        m.reset = m.soft_reset = reset
        return m


class Stdin:
    """sys.stdin (what select.poll registers) and its .buffer (readinto)."""

    def __init__(self):
        self.data = bytearray()
        self.buffer = self

    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        if not n:
            return None
        buf[:n] = self.data[:n]
        del self.data[:n]
        return n


class Stdout:
    """sys.stdout.buffer: collects the frames; with a baud, each byte costs its link time on the clock
    (a blocking UART writer with no FIFO: the worst case for a firmware that writes more than fits)."""

    def __init__(self, clock, baud):
        self.clock = clock
        self.baud = baud
        self.data = bytearray()
        self.buffer = self

    def write(self, buf, *off_n):
        """MicroPython's stream write: write(buf), write(buf, max_len), write(buf, off, max_len)."""
        if isinstance(buf, str):
            buf = buf.encode()
        off, n = (0, off_n[0]) if len(off_n) == 1 else off_n if off_n else (0, None)
        data = memoryview(buf)[off:None if n is None else off + n]
        self.data += data
        if self.baud:
            self.clock.us += len(data) * 10000000 // self.baud
        return len(data)


def _select_module(stdin):
    m = types.ModuleType("select")
    m.POLLIN, m.POLLOUT, m.POLLERR, m.POLLHUP = 1, 4, 8, 16

    class Poll:
        def __init__(self):
            self.streams = []

        def register(self, stream, mask=1):
            self.streams.append((stream, mask))

        def ipoll(self, timeout=-1, flags=0):
            return [(s, m.POLLIN) for s, mask in self.streams if s is stdin and stdin.data and mask & m.POLLIN]

        poll = ipoll

    m.poll = Poll
    return m


def _sys_module(stdin, stdout):
    m = types.ModuleType("sys")
    m.stdin, m.stdout, m.stderr = stdin, stdout, sys.stderr
    m.implementation = types.SimpleNamespace(name="micropython", version=(1, 24, 0, ""), _mpy=6 | (10 << 2))
    m.platform = "esp32"
    m.byteorder = "little"
    m.maxsize = SMALL_MAX
    m.path, m.argv, m.modules = [""], [], {}
    m.print_exception = lambda e, f=None: None
    m.exit = sys.exit
    return m


# -- the checker -----------------------------------------------------------------------------------

class _Ptr32:
    """viper's ptr32 as a 64-bit build loads it: 32-bit words zero-extended (kernels sign-extend them)."""

    def __init__(self, buf):
        self.buf = buf

    def __getitem__(self, i):
        return self.buf[i] & 0xFFFFFFFF

    def __setitem__(self, i, v):
        v &= 0xFFFFFFFF
        self.buf[i] = v - (1 << 32) if v >= 1 << 31 and getattr(self.buf, "typecode", "I") in "il" else v


class Checker:
    """One firmware instance on a fake ESP32; records every out-of-range int it computes."""

    def __init__(self, start_us=0, baud=0, read_cost_us=23):
        self.records = {}  # site id -> Record
        self.seen = set()  # ids of the sites executed (in any phase)
        self.phase = "harness"
        self.tick = None  # index of the tick running (None outside Gen0.tick)
        self.clock = Clock(start_us, read_cost_us)
        self.board = Board()
        self.stdin = Stdin()
        self.stdout = Stdout(self.clock, baud)
        self.stubs = {
            "micropython": _micropython_module(), "machine": self.board.module(), "time": self.clock.module(),
            "select": _select_module(self.stdin), "sys": _sys_module(self.stdin, self.stdout), "gc": _gc_module(),
        }
        for alias in ("time", "select", "sys", "machine"):
            self.stubs["u" + alias] = self.stubs[alias]
        self.modules = {}
        self.builtins = dict(builtins.__dict__, __import__=self._import, exec=self._exec)

    # checks compiled into the firmware
    def check(self, sid, value):
        self.seen.add(sid)
        if value.__class__ is int and not SMALL_MIN <= value <= SMALL_MAX:
            self._record(sid, value)
        elif value.__class__ is tuple:
            for v in value:
                if v.__class__ is int and not SMALL_MIN <= v <= SMALL_MAX:
                    self._record(sid, v)
        return value

    def call(self, sid, f):
        """f itself when it is firmware Python (its own code is checked), else f with its result checked."""
        self.seen.add(sid)
        code = getattr(getattr(f, "__func__", f), "__code__", None)
        if code is not None and code.co_filename in self._files:
            return f
        check = self.check

        def checked(*args, **kwargs):
            return check(sid, f(*args, **kwargs))
        return checked

    def _record(self, sid, value):
        stack = []
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename in self._files:
                stack.append(frame.f_code.co_qualname)
            frame = frame.f_back
        phase = self.phase
        if phase == "loop":
            phase = "command" if "Commands.run" in stack else "tick"
        rec = self.records.get(sid)
        if rec is None:
            rec = self.records[sid] = Record(SITES[sid])
        rec.add(value, phase, self.tick if phase == "tick" else None, tuple(reversed(stack)))

    _files = frozenset(["firmware/%s.py" % n for n in FIRMWARE_MODULES] + ["firmware/mlp.py<exec>", "<snippet>"])

    # module loading
    def _globals(self, name, file):
        return {"__name__": name, "__file__": file, "__builtins__": self.builtins, _CHECK: self.check, _CALL: self.call}

    def load(self, name):
        m = self.modules.get(name)
        if m is None:
            m = self.modules[name] = types.ModuleType(name)
            file = "firmware/%s.py" % name
            m.__dict__.update(self._globals(name, file))
            phase, self.phase = self.phase, "boot"
            try:
                exec(instrument((FIRMWARE / (name + ".py")).read_text(), file), m.__dict__)
            finally:
                self.phase = phase
        return m

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            if name in self.stubs:
                return self.stubs[name]
            if name in FIRMWARE_MODULES:
                return self.load(name)
        return builtins.__import__(name, globals, locals, fromlist, level)

    def _exec(self, source, namespace=None, *rest):
        """mlp.py's exec(): the viper kernel as written (plain Python here), other sources instrumented."""
        if namespace is None or not isinstance(source, str):
            return exec(source, namespace, *rest)
        if any("@micropython." + d in source for d in VIPER_DECORATORS):
            namespace.setdefault("micropython", self.stubs["micropython"])
            for p in ("ptr8", "ptr16"):
                namespace.setdefault(p, lambda buf: buf)
            namespace.setdefault("ptr32", _Ptr32)
            return exec(compile(source, "<viper>", "exec"), namespace)
        namespace.setdefault("__builtins__", self.builtins)
        namespace.setdefault(_CHECK, self.check)
        namespace.setdefault(_CALL, self.call)
        return exec(instrument(source, "firmware/mlp.py<exec>"), namespace)

    def snippet(self, source, namespace=None):
        """Instrument and run a piece of code (phase "harness"); its namespace."""
        ns = self._globals("snippet", "<snippet>")
        ns.update(namespace or {})
        phase, self.phase = self.phase, "harness"
        try:
            exec(instrument(source, "<snippet>"), ns)
        finally:
            self.phase = phase
        return ns

    # the robot
    def robot(self, flash, robot=None, model=True, loop=None, link=None):
        """A loop.Gen0 booted from `flash` (a folder: robot.json, model.bin written there); cwd must be flash.

        model: True = models/gen0-default/model.bin, bytes = that blob, False = none; loop, link: robot.json's
        `loop` and `link` settings to change."""
        cfg = json.loads(json.dumps(robot or ROBOT))
        if loop:
            cfg["loop"].update(loop)
        if link:
            cfg.setdefault("link", {}).update(link)
        Path(flash, "robot.json").write_text(json.dumps(cfg))
        if model:
            Path(flash, "model.bin").write_bytes(MODEL_BLOB.read_bytes() if model is True else model)
        self.phase = "boot"
        loop_mod = self.load("loop")
        r = loop_mod.Gen0(self.load("config").load())
        self.phase = "harness"
        ticks = [0]
        inner = r.tick

        def tick(t_us):
            ticks[0] += 1
            self.tick = ticks[0]
            lines = self._feed.pop(ticks[0], None)
            if lines:
                self.stdin.data += b"".join(lines)
            try:
                inner(t_us)
                self.clock.us += self._stalls.pop(ticks[0], 0)
            finally:
                self.tick = None
        r.tick = tick
        self._feed = {}
        self._stalls = {}
        self._ticks = ticks
        return r

    def run(self, r, n, commands=None, stalls=None):
        """n ticks of Gen0.run; commands {tick offset from now: [command line bytes]} go to stdin before
        that tick, stalls {tick offset: µs} make that tick last that much longer (a GC pause, a flash write)."""
        base = self._ticks[0]
        for k, lines in (commands or {}).items():
            self._feed.setdefault(base + k, []).extend(lines)
        for k, us in (stalls or {}).items():
            self._stalls[base + k] = us
        self.phase = "loop"
        try:
            r.run(n)
        finally:
            self.phase = "harness"

    def violations(self, phases=("tick", "command")):
        return [rec for rec in self.records.values() if any(p in rec.phases for p in phases)]


@contextlib.contextmanager
def flash_folder():
    """A temporary flash root as the working directory (config and models open relative paths)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="smallints-") as d:
        os.chdir(d)
        try:
            yield d
        finally:
            os.chdir(old)


# -- scenarios -------------------------------------------------------------------------------------

def _protocol():
    from polyniod_firmware import protocol  # the host's copy (plain CPython): it builds the command lines
    return protocol


class Commands:
    """Numbered command lines as the host sends them."""

    def __init__(self):
        self.seq = 0
        self.P = _protocol()

    def __call__(self, name, *args):
        self.seq += 1
        return self.P.encode_command(self.seq, name, [str(a) for a in args])

    def xfer(self, slot, data):
        P = self.P
        lines = [self("xfer", "begin", slot, len(data), "%08x" % binascii.crc32(data))]
        for at in range(0, len(data), P.CHUNK):
            lines.append(self("xfer", "put", at, P.encode_chunk(data[at:at + P.CHUNK])))
        lines.append(self("xfer", "end"))
        return lines


def _spread(lines, first, every):
    """{tick: [line]}: one line every `every` ticks from `first`."""
    return {first + i * every: [line] for i, line in enumerate(lines)}


def _traj(n_ticks, n_joints=2):
    """A host trajectory: int16 LE targets (0.01 deg) sweeping each joint's whole range, extremes included."""
    import struct
    out = bytearray()
    for k in range(n_ticks):
        for j in range(n_joints):
            v = ((k * (37 + 11 * j)) % 17001) - 8500  # -85.00 .. 85.00 deg
            out += struct.pack("<h", v)
    return bytes(out)


def _imu_blob(seed=0):
    """A small tanh model reading every kind of signal (target look-ahead, history, pulse, IMU, raw ADC),
    with tight normalisations (saturating inputs); built with the host's exporter."""
    import numpy as np
    from host.export import quantize as Q
    rng = np.random.default_rng(seed)
    inputs = ["shoulder_target_deg@3", "elbow_deg@-2", "shoulder_cmd_us@-1", "gz", "elbow_raw", "elbow_target_deg@-1",
              "ax@-16", "shoulder_target_deg@64"]
    n = len(inputs)
    layers = [{"w": rng.uniform(-1, 1, (8, n)), "b": rng.uniform(-1, 1, 8), "act": "tanh"},
              {"w": rng.uniform(-1, 1, (2, 8)), "b": rng.uniform(-1, 1, 2), "act": "linear"}]
    return Q.export(layers, rng.normal(size=(300, n)), [0, 0, 1450, 0, 30000, 0, 0, 0], [30, 3, 300, 50, 5000, 30, 1, 30],
                    [1450, 1450], [900, 300], inputs, ["shoulder_cmd_us", "elbow_cmd_us"], "test")


# Clock start: both ticks_us and ticks_ms 50 ms (10 ticks at 200 Hz) before they wrap at 2**30.
NEAR_WRAP_US = 1000 * (TICKS_PERIOD - 50)


def scenarios():
    """[(name, fn(checker, flash) -> None)]: every mode, program, trajectory and controller, across a ticks wrap."""
    out = []

    def idle(c, flash):
        r = c.robot(flash)
        cmd = Commands()
        c.run(r, 300, {5: [cmd("hello")], 80: [cmd("ping"), cmd("status")], 150: [cmd("idle", "limp")],
                       200: [cmd("status"), cmd("stages")], 250: [cmd("idle", "hold")]},
              stalls={100: 7000, 120: 60000})  # a late tick, and one late past RESYNC_US
        # bad lines: CRC error, syntax error, overlong line
        c.run(r, 60, {1: [b"7 ping 0badf00d\n"], 10: [b"x" * 300 + b"\n"], 20: [b"8 PING %08x\n" % binascii.crc32(b"8 PING")],
                      30: [cmd("telemetry", 2)], 40: [cmd("telemetry", 1), cmd("rate", 300)]})
    out.append(("idle", idle))

    def usb(c, flash):
        """link.baud 0 (native USB): frames are written at once, not paced."""
        r = c.robot(flash, link={"baud": 0}, loop={"rate_hz": 1000})
        cmd = Commands()
        c.run(r, 200, {5: [cmd("hello")], 50: [cmd("status")], 60: [cmd("direct")], 70: [cmd("set", 1000, 2000)],
                       100: [cmd("stages")]}, stalls={30: 3000, 90: 80000})
    out.append(("usb link", usb))

    def slow_link(c, flash):
        """115200 baud at 1 kHz with a UART that blocks for every byte written: frames outlast ticks
        (overruns, resyncs after the hello); a file transfer; the IMU failing mid-run."""
        c.stdout.baud = 115200
        r = c.robot(flash, loop={"rate_hz": 1000}, link={"baud": 115200})
        cmd = Commands()
        data = next(d for d in (bytes(range(k, k + 250)) * 2 for k in range(256)) if binascii.crc32(d) > SMALL_MAX)
        feed = {2: [cmd("hello")]}
        feed.update(_spread(cmd.xfer("file:blob.bin", data), 10, 4))
        c.run(r, 150, feed)
        assert Path(flash, "blob.bin").read_bytes() == data
        c.board.imu_present = False
        c.run(r, 50, {5: [cmd("status")]})
    out.append(("slow link", slow_link))

    def direct(c, flash):
        r = c.robot(flash)
        cmd = Commands()
        sets = [cmd("set", 600 + (k * 137) % 1800, 2400 - (k * 71) % 1900) for k in range(150)]
        sets += [cmd("set", 100, 5000), cmd("set", -20, 99999)]  # clamped
        sets += [cmd("set", 999999999, -999999999)]  # the fast path's widest ints (9 digits)
        sets += [sets[-1]]  # the host's retry: re-acked from memory
        sets += [cmd("set", "+1500", "01500"), cmd("set", 1500)]  # the general way: Commands.set (E_OK, E_ARG)
        feed = {1: [cmd("set", 1500, 1500), cmd("direct")]}  # E_STATE (the general way), then direct
        feed.update(_spread(sets, 3, 2))
        c.run(r, 400 + 200, feed)  # the last set, then silence: the watchdog trips
        c.run(r, 50, {1: [cmd("set", 1500, 1500)], 10: [cmd("stop")], 30: [cmd("idle", "limp")]})
    out.append(("direct", direct))

    def program(name, *params, rate=1000, ticks=None):
        def fn(c, flash):
            r = c.robot(flash, loop={"rate_hz": rate})
            cmd = Commands()
            c.run(r, 3, {1: [cmd("program", name, *params)]})
            n = r.mode.n if r.mode.name == "program" else 0
            c.run(r, ticks or n + 5, {min(n, 500) // 2: [cmd("status")]})
            assert ticks or r.mode.name == "idle", "program %s did not end" % name
        return fn

    out += [
        ("program steps", program("steps", "duration_ms=3000", "dwell_min_ms=5", "dwell_max_ms=40")),
        ("program steps wide", program("steps", "seed=1073741823", "duration_ms=2000", "dwell_min_ms=1",
                                       "dwell_max_ms=30000", rate=1000)),
        ("program chirp", program("chirp", "duration_ms=3000", "f1_mhz=250000", "amp_us=3000")),
        ("program chirp down", program("chirp", "duration_ms=2000", "f0_mhz=249000", "f1_mhz=0", rate=1000)),
        ("program sweep", program("sweep", "duration_ms=3000", "levels=64", "f1_mhz=250000")),
        ("program prbs", program("prbs", "seed=1073741823", "duration_ms=3000", "bit_ms=1", "amp_us=3000")),
        ("program multisine", program("multisine", "seed=1073741823", "duration_ms=3000", "n=16", "f0_mhz=1",
                                      "f1_mhz=250000", "amp_us=3000")),
        ("program chirp 1 h", program("chirp", "duration_ms=3600000", rate=1000, ticks=1500)),
    ]

    def track(trajectory, *params, rate=200, traj=None, plain_kernel=False, ticks=None, model=True):
        def fn(c, flash):
            r = c.robot(flash, loop={"rate_hz": rate}, model=model() if callable(model) else model)
            cmd = Commands()
            if plain_kernel:
                m = r.models.model
                m._kernel = c.load("mlp").plain_layer  # the instrumented fallback kernel
            feed = {}
            at = 1
            if traj is not None:
                lines = cmd.xfer("traj", traj)
                feed.update(_spread(lines, 1, 4))
                at = 4 * len(lines) + 5
            c.run(r, at, feed)
            c.run(r, 2, {1: [cmd("track", trajectory, *params)]})
            assert r.mode.name == "track", "track %s %s did not start: %s" % (trajectory, params, c.stdout.data[-200:])
            n = r.mode.n
            c.run(r, ticks or n + 5, {n // 3: [cmd("status")], n // 2: [cmd("ping")]})
            assert ticks or r.mode.name == "idle", "track %s did not end" % trajectory
        return fn

    for ctl in ("naive", "linear", "model"):
        out += [
            ("track hold %s" % ctl, track("hold", "duration_ms=300", "deg=85,-85", "controller=" + ctl)),
            ("track steps %s" % ctl, track("steps", "duration_ms=3000", "dwell_min_ms=10", "dwell_max_ms=100",
                                           "controller=" + ctl)),
            ("track steps seed %s" % ctl, track("steps", "seed=1073741823", "duration_ms=500", "controller=" + ctl)),
            ("track sine %s" % ctl, track("sine", "duration_ms=3000", "amp_deg=85", "f_mhz=50000", "controller=" + ctl)),
            ("track traj %s" % ctl, track("traj", "controller=" + ctl, traj=_traj(600))),
        ]
    out += [
        ("track linear lin=", track("sine", "duration_ms=2000", "amp_deg=80", "controller=linear",
                                    "lin=4999,199.9,-4999,-199.9")),
        ("track model plain kernel", track("steps", "duration_ms=1000", "dwell_min_ms=10", "dwell_max_ms=60",
                                           "controller=model", plain_kernel=True)),
        ("track model imu", track("sine", "duration_ms=3000", "amp_deg=85", "f_mhz=20000", "controller=model",
                                  model=_imu_blob)),
        ("track model imu plain kernel", track("steps", "duration_ms=800", "dwell_min_ms=10", "dwell_max_ms=60",
                                               "controller=model", model=_imu_blob, plain_kernel=True)),
    ]

    def model_commands(c, flash):
        r = c.robot(flash)
        cmd = Commands()
        rows = bytes(range(0, 256, 7))[:6 * 4]
        c.run(r, 60, {1: [cmd("mtest", _protocol().encode_chunk(rows))], 20: [cmd("mtime", 50)]})
    out.append(("mtest mtime", model_commands))

    def aged(c, flash):
        """After ~2**30 ticks (62 days at 200 Hz): the loop's unbounded counters at the edge."""
        r = c.robot(flash)
        cmd = Commands()
        c.run(r, 3, {1: [cmd("direct")]})
        edge = SMALL_MAX  # the next increment leaves the small ints
        r.ticks = r.overruns = r.rx_bytes = r.port.frames = edge
        rd = r.commands.reader
        rd.lines = rd.crc_errors = rd.syntax_errors = rd.overflows = edge
        if hasattr(r, "stages"):
            r.stages.n = 32768 - 5  # StageTimes halves its totals here
        c.run(r, 40, {1: [cmd("set", 1400, 1500)], 5: [b"9 ping 0badf00d\n"], 8: [b"y" * 300 + b"\n"],
                      12: [b"10 PING %08x\n" % binascii.crc32(b"10 PING")], 20: [cmd("status")]},
              stalls={3: 6000, 4: 100000})
    out.append(("aged counters", aged))
    return out


def run_scenarios(names=None, start_us=NEAR_WRAP_US, baud=0):
    """({site key: Record} over all scenarios (merged), {scenario: {ticks, wrapped}}, {ids of the sites executed}).

    wrapped: the fake clock crossed a multiple of 2**30 µs (ticks_us wrapped) during the scenario."""
    merged = {}
    ticks = {}
    seen = set()
    for name, fn in scenarios():
        if names is not None and name not in names:
            continue
        c = Checker(start_us=start_us, baud=baud)
        with flash_folder() as flash:
            fn(c, flash)
        ticks[name] = {"ticks": c._ticks[0], "wrapped": c.clock.us // TICKS_PERIOD > start_us // TICKS_PERIOD}
        seen |= c.seen
        for rec in c.records.values():
            rec.stack = rec.stack and (name,) + rec.stack
            key = rec.site.key()
            if key in merged:
                merged[key].merge(rec)
            else:
                merged[key] = rec
    return merged, ticks, seen


def report(records, ticks):
    total = sum(t["ticks"] for t in ticks.values())
    lines = ["%d scenarios, %d ticks; %d sites left the 31-bit small ints:" % (len(ticks), total, len(records))]
    for rec in sorted(records.values(), key=lambda r: (r.site.file, r.site.line)):
        s = rec.site
        per = "in %d ticks (max %d/tick)" % (rec.ticks, rec.max_per_tick) if rec.ticks else ""
        lines.append("%s:%d %s [%s] %s  e.g. %d  x%d %s %s  via %s" % (
            s.file, s.line, s.func, s.kind, s.expr, rec.sample(), rec.count,
            ",".join("%s=%d" % kv for kv in sorted(rec.phases.items())), per, " > ".join(rec.stack or ())))
    return "\n".join(lines)


if __name__ == "__main__":
    import time as _time
    t0 = _time.time()
    recs, ticks, _ = run_scenarios(sys.argv[1:] or None)
    print(report(recs, ticks))
    print("%.1f s" % (_time.time() - t0))
