"""The virtual Gen0: the real MicroPython unix VM made to behave like an ESP32 on a USB serial port.

The unix VM already has the friendly and raw REPL, raw-paste and Ctrl-C, but an
ESP32 differs where mpremote and the firmware can tell: it soft-reboots where the
VM exits, runs boot.py/main.py, prints its own banners, has a slow UART with a
260-byte input buffer, a 2**30 tick period and pins. The supervisor closes those
gaps from outside the VM:

- one thread relays bytes between the user's pty and the VM's pty through the
  UART model (host/sim/port.py), stopping the VM (SIGSTOP) while its TX FIFO is full;
- it reads the VM's output to learn friendly vs raw mode and to swap the unix
  banner for the ESP32's (console.py); when the VM exits it prints `MPY: soft reboot` and starts
  a new one in the mode the REPL was in (raw: boot.py only, then the raw prompt
  mpremote waits for); machine.reset(), the WDT and crashes restart it from
  power-on with the ROM's boot text and ticks from 0;
- the bus thread (host/sim/bus.py) answers the `machine` and `time` shims from the
  VirtualBoard, on the board's clock (host/sim/clock.py), which bills the VM's CPU
  time at an ESP32's pace; the supervisor stops a VM that runs ahead of it without
  making calls, and models the ESP32 stdout writer's 10 ms waits on a full TX FIFO.
Which VM runs, and how it is started, is unix_vm.py's. See SIM.md for the differences that remain.
"""

import atexit
import contextlib
import errno
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from host.errors import UserError
from host.sim import registry, truth
from host.sim.board import VirtualBoard
from host.sim.bus import Bus
from host.sim.clock import BoardClock, cpu_model, for_host, host_speed
from host.sim.console import HOLD_S, Console
from host.sim.port import CTRL_C, HOST_QUEUE, TX_FIFO, Uart, UserPort, inq, vm_pty
from host.sim.unix_vm import find_micropython, vm_launch, vm_version

SHIM_DIR = Path(__file__).resolve().parent / "shim"
BOOTSTRAP = SHIM_DIR / "bootstrap.py"
HEAP_KB = 110  # the ESP32's Python heap (no PSRAM) being modeled
HEAP_SCALE = 2  # a 64-bit VM's objects and GC blocks (4 words) are twice an ESP32's (SIM.md)
SHIM_KB = 45  # what the shims and bootstrap keep, added so that the firmware gets all of the rest

PWRON_RESET, WDT_RESET, SOFT_RESET = 1, 3, 5
ROM_RESET = {PWRON_RESET: "0x1 (POWERON_RESET)", SOFT_RESET: "0xc (SW_CPU_RESET)", WDT_RESET: "0xc (SW_CPU_RESET)"}
ROM_TEXT = (
    "ets Jul 29 2019 12:21:46\r\n\r\nrst:{rst},boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    "configsip: 0, SPIWP:0xee\r\nclk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
    "mode:DIO, clock div:2\r\nload:0x3fff0030,len:4728\r\nload:0x40078000,len:14888\r\n"
    "load:0x40080400,len:3368\r\nentry 0x400805cc\r\n"
)
SOFT_REBOOT = b"MPY: soft reboot\r\n"
BROWNOUT = b"\r\nBrownout detector was triggered\r\n\r\n"  # ESP-IDF's brownout ISR, then esp_restart_noos()
BATCH_S = 0.001  # bytes move at most this often (a USB bridge's latency is larger)
RTOS_TICK_S = 0.01  # FreeRTOS tick (100 Hz): a writer waiting on a full TX FIFO wakes on this grid
GIL_SWITCH_S = 0.0005  # Python's default 5 ms would let a busy thread of this process stall every bus call
PACE_CHECK_S = 0.002  # how often the supervisor checks that a VM making no calls keeps the board's pace
WEDGE_S = 1.0  # a VM blocked on a lock this long is deadlocked: reset it


class VirtualGen0:
    """A Gen0 on a pty: the firmware in `flash_dir` under the real MicroPython VM, pins wired to a VirtualBoard.

    speed None: real-time clock; X >= 0: virtual clock paced at X times real time (0 = flat out).
    cpu 'esp32' (the VM's work costs an ESP32's time) or 'host' (the VM's own speed); cpu_factor:
    the ESP32 model's factor at 240 MHz (0 = CPU time is free). baud 0: no UART pacing.
    corrupt: fraction of device->host bytes with a flipped bit (seeded). faults: wiring faults,
    'NAME' or 'NAME:JOINT' (host/sim/faults.py; none by default).
    """

    def __init__(self, flash_dir=None, preload=False, plant=None, robot=None, seed=0, speed=None,
                 baud=115200, link=None, heap_kb=HEAP_KB, corrupt=0.0, log=None, cpu="esp32", cpu_factor=None,
                 faults=()):
        if speed is not None and not 0 <= speed < 1e6:
            raise UserError(f"--speed {speed}: give a factor >= 0 (0 = as fast as possible)")
        try:
            self.cpu = cpu_model(cpu, cpu_factor)
        except ValueError as e:
            raise UserError(str(e)) from None
        if not isinstance(baud, int) or baud < 0:
            raise UserError(f"--baud {baud}: give a baud rate (0 = unlimited)")
        if not 0 <= corrupt <= 1:
            raise UserError(f"--corrupt {corrupt}: give a fraction of bytes between 0 and 1")
        if not 16 <= heap_kb <= 1 << 20:
            raise UserError(f"--heap-kb {heap_kb}: give a heap size in KiB, at least 16")
        self.exe = find_micropython()
        self._launch, self._kbd_signal = vm_launch(self.exe)
        self.version = vm_version(self.exe)
        self.cpu = for_host(self.cpu, host_speed(self.exe) if self.cpu.scales and self.cpu.factor else 1.0)
        robot_file = Path(robot) if robot else None
        try:
            self.board = VirtualBoard.from_files(robot_file, plant, seed, faults)
        except (ValueError, OSError) as e:
            raise UserError(f"cannot build the virtual Gen0: {e}") from None
        from host.firmware_files import install_into, load_robot

        imu = load_robot(robot_file).get("imu")
        self.imu_pins = (imu["scl_pin"], imu["sda_pin"]) if imu else None
        self._own_flash = flash_dir is None
        self.flash_dir = Path(tempfile.mkdtemp(prefix="gen0-flash-")) if flash_dir is None else Path(flash_dir)
        try:
            self.flash_dir.mkdir(parents=True, exist_ok=True)
            probe = self.flash_dir / ".gen0-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UserError(f"--flash-dir {self.flash_dir}: not a writable directory ({e.strerror})") from None
        if preload:
            install_into(self.flash_dir, robot_file)
        self.seed, self.speed, self.baud, self.corrupt = seed, speed, baud, corrupt
        self.heap_kb, self.link_path = heap_kb, link
        self.log = log or (lambda msg: None)
        self.port = None
        self.link = None
        self.soft_resets = self.hard_resets = self.crashes = 0
        self.tx_stalls = 0  # times the VM was stopped on a full TX FIFO
        self.pace_stops = 0  # times the VM was stopped for running ahead of the board's clock
        self.wedges = 0  # times a deadlocked VM was reset
        self.clock = BoardClock(self.cpu, speed)
        self.failed = None  # why the VM could not boot, if it could not
        self._uart = Uart(baud, speed, corrupt, seed)
        self._console = self._bus = self._proc = None
        self._bus_ops = 0
        self._thread = None
        self._note = None

    # -- public ------------------------------------------------------------------
    def start(self):
        """Power on: the port appears, the ROM prints, boot.py and main.py run."""
        if self._thread:
            return self
        if sys.getswitchinterval() > GIL_SWITCH_S:
            sys.setswitchinterval(GIL_SWITCH_S)  # the bus thread answers the VM within this, whatever else runs here
        self._user = UserPort(self.link_path)
        self.port, self.link = self._user.path, self._user.link
        self._vm_master, self._vm_slave, self._vm_attrs = vm_pty()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._quit = False
        self._boot_ready = threading.Event()
        self._proc = self._bus = self._pidfd = None
        self._uart = Uart(self.baud, self.speed, self.corrupt, self.seed)
        self._out = bytearray()  # device output not yet in the TX FIFO
        self._rtc_us = 0
        self._wdt = None  # [timeout ms, fed at (host s or VM µs)] while a WDT runs
        self._request = None
        self.failed = None
        try:
            self._power_on(PWRON_RESET)
        except BaseException:
            self._teardown()
            raise
        self._thread = threading.Thread(target=self._supervise, name="gen0-supervisor", daemon=True)
        self._thread.start()
        self._truth = truth.serve(self.board, self.port)  # the limb's own angles, for scoring (truth.py)
        self._note = registry.register(self.port, self.link, seed=self.seed, flash_dir=str(self.flash_dir),
                                       cpu=self.cpu.describe(), cpu_model=self.cpu.name,
                                       faults=[str(f) for f in self.board.faults], truth=self._truth.path)
        atexit.register(self.stop)  # no VM, pty or temporary flash outlives the process
        return self

    def wait_ready(self, timeout=10):
        """Block until the VM of the current boot is up (its shims installed)."""
        return self._boot_ready.wait(timeout)

    def kill(self):
        """Pull the cable: the VM dies, the port vanishes. The flash stays; start() powers on again."""
        if not self._thread:
            return
        self._quit = True
        self._wake()
        self._thread.join(10)
        self._thread = None
        registry.unregister(self._note)
        self._truth.close()

    def stop(self):
        """kill(), and remove the flash directory if it was a temporary one."""
        atexit.unregister(self.stop)
        self.kill()
        if self._own_flash and self.flash_dir.exists():
            shutil.rmtree(self.flash_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def mode(self):
        """'friendly' or 'raw': the REPL mode the port shows."""
        return self._console.mode if self._console else None

    @property
    def vm_pid(self):
        """Process id of the current (or last) MicroPython VM."""
        return self._proc.pid if self._proc else None

    def counters(self):
        u = self._uart
        return {"rx_bytes": u.rx_bytes, "rx_dropped": u.rx_dropped, "tx_bytes": u.tx_bytes,
                "tx_lost": u.tx_lost, "tx_corrupted": u.tx_corrupted, "soft_resets": self.soft_resets,
                "hard_resets": self.hard_resets, "crashes": self.crashes, "tx_stalls": self.tx_stalls,
                "pace_stops": self.pace_stops, "wedges": self.wedges, "bus_ops": self.bus_ops,
                "clock": self.clock.figures()}

    rx_dropped = property(lambda self: self._uart.rx_dropped)
    rx_bytes = property(lambda self: self._uart.rx_bytes)
    tx_bytes = property(lambda self: self._uart.tx_bytes)
    bus_ops = property(lambda self: self._bus_ops + (self._bus.ops if self._bus else 0))

    # -- boots -------------------------------------------------------------------
    def _power_on(self, cause, rst=None):
        """Hard reset: the ROM's text (rst: its reset reason, else the cause's), the clock from 0, main.py runs."""
        self.clock.power_on()
        self._rtos0 = time.monotonic()
        self._cause = cause
        self._console = Console(self.version, self._enter_raw)
        termios.tcflush(self._vm_slave, termios.TCIFLUSH)  # the UART's buffer does not survive
        self._out += ROM_TEXT.format(rst=rst or ROM_RESET[cause]).encode()
        self._spawn("friendly")

    def _soft_reboot(self):
        self.soft_resets += 1
        self._out += SOFT_REBOOT
        mode = self._console.mode
        self._spawn(mode)
        self.log(f"soft reset -> {mode} REPL")

    def _spawn(self, mode):
        self._boot_ready.clear()
        self._ready = False
        self._stopped = False
        self._tx_resume = self._pace_until = None
        self._next_pace_check = self._next_wedge_check = 0.0
        self._wedged_since = None
        self._console.raw_boot = mode == "raw"
        self._bus = Bus(self.board, self.imu_pins, self.clock, self._on_bus)
        rfd, wfd = self._bus.child_fds()
        heap = (self.heap_kb * HEAP_SCALE + SHIM_KB) * 1024
        calibrate = "0" if not self.cpu.factor else "1" if self.clock.cold else "2"  # 2: the cold run too (first boot)
        cold_us, cold_ratio = self.clock.cold or (0.0, 1.0)
        args = [*self._launch, "-X", f"heapsize={heap}", "-i", str(BOOTSTRAP), str(rfd), str(wfd), mode, str(self._cause),
                str(self._rtc_us), self.board.unique_id.hex(), str(self.clock.mhz), calibrate,
                str(self.clock.factor_q()), str(round(self.board.cost_us("clock") * 1024)),
                str(round(cold_us * 100)), str(round(cold_ratio * 100))]
        termios.tcsetattr(self._vm_slave, termios.TCSANOW, self._vm_attrs)  # a killed VM may have left it raw
        slave = self._vm_slave

        def controlling_tty():  # in the child: its own session (a Ctrl-C to `host sim` is not its), the pty its tty
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            self._proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=self.flash_dir,
                                          pass_fds=(rfd, wfd), preexec_fn=controlling_tty)
        except OSError as e:
            self._bus.close()
            raise UserError(f"cannot start the MicroPython VM {self.exe}: {e}") from None
        self.clock.attach(self._proc.pid)
        self._bus.start()
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def _enter_raw(self):
        os.write(self._vm_master, b"\x01")

    # -- bus events (bus thread) ---------------------------------------------------
    def _on_bus(self, kind, arg):
        if kind == "ready":
            self._ready = True
            self._boot_ready.set()
        elif kind == "wdt":
            fed = time.monotonic() if self.speed is None else self.clock.now()
            if not arg:
                if self._wdt:
                    self._wdt[1] = fed
                return
            self._wdt = [arg, fed]
        elif kind in ("reset", "soft_reset", "brownout"):
            self._request = kind
        self._wake()

    def _wake(self):
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    # -- the supervisor thread -------------------------------------------------------
    def _supervise(self):
        try:
            self._loop()
        except Exception as e:  # never die silently: say why and take the board down
            self.log(f"supervisor failed: {e!r}")
            print(f"host sim: supervisor failed: {e!r}", file=sys.stderr)
        finally:
            self._teardown()

    def _loop(self):
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self._vm_master, select.POLLIN)
        user = self._user
        connected, user_mask, last_check = False, None, 0.0
        vm_mask = select.POLLIN
        pidfd = None
        last_drops, last_drop_log = 0, 0.0
        while not self._quit:
            now = time.monotonic()
            if pidfd != self._pidfd:
                if pidfd is not None:
                    poller.unregister(pidfd)
                pidfd = self._pidfd
                if pidfd is not None:
                    poller.register(pidfd, select.POLLIN)
            # who has the port open (POLLHUP on our master = no one)
            if not connected and now - last_check > 0.02:
                last_check = now
                p = select.poll()
                p.register(user.master, select.POLLIN)
                if not any(ev & select.POLLHUP for _, ev in p.poll(0)):
                    connected, user_mask = True, None
            want = select.POLLIN if len(self._uart.rx) < HOST_QUEUE else 0
            if connected and want != user_mask:
                (poller.modify if user_mask is not None else poller.register)(user.master, want)
                user_mask = want
            want = select.POLLIN if len(self._out) < TX_FIFO else 0
            if want != vm_mask:
                poller.modify(self._vm_master, want)
                vm_mask = want
            timeout = self._timeout(now, connected)
            events = dict(poller.poll(None if timeout is None else max(0, timeout * 1000)))
            now = time.monotonic()
            if self._wake_r in events:
                os.read(self._wake_r, 4096)
            ev = events.get(user.master, 0)
            if connected and ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                poller.unregister(user.master)
                connected, user_mask = False, None
            elif ev & select.POLLIN:
                data = user.read()
                if data is None:
                    poller.unregister(user.master)
                    connected, user_mask = False, None
                elif data:
                    self._uart.host_sent(data, now)
            if events.get(self._vm_master, 0) & select.POLLIN:
                self._read_vm(now)
            self._out += self._console.flush(now)
            self._pace(now)
            self._pump(now, connected)
            if self._proc and (pidfd in events if pidfd is not None else self._proc.poll() is not None):
                self._vm_ended(now)
            elif self._request:
                self._kill_vm()
            elif self._wdt_expired():
                self._wdt_reset(now)
            elif self._wedged(now):
                self._request = "wedged"
                self._kill_vm()
            if self._uart.rx_dropped != last_drops and now - last_drop_log > 1:
                self.log(f"rx: {self._uart.rx_dropped - last_drops} bytes dropped (260-byte buffer full)")
                last_drops, last_drop_log = self._uart.rx_dropped, now

    def _timeout(self, now, connected):
        if self._out and self._uart.tx_room() and self._tx_resume is None:
            return 0
        due = self._uart.next_due(now)
        waits = [due if not due else max(due, BATCH_S)]
        if self._tx_resume is not None:
            waits.append(max(0.0, self._tx_resume - now))
        if self._pace_until is not None:
            waits.append(max(0.0, self._pace_until - now))
        elif self._ready and self.clock.paces:
            waits.append(max(0.0, self._next_pace_check - now))
        if self._console.hold:
            waits.append(HOLD_S)
        if not connected:
            waits.append(0.02)
        if self._pidfd is None and self._proc:
            waits.append(0.05)
        if self._wdt:
            waits.append(0.01)
        if self._proc and self._proc.returncode is None:
            waits.append(max(0.0, self._next_wedge_check - now))
        waits = [w for w in waits if w is not None]
        return min(waits) if waits else None

    def _read_vm(self, now):
        try:
            data = os.read(self._vm_master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            return
        self._out += self._console.feed(data, now)

    def _pace(self, now):
        """Stop a VM that runs ahead of the board's clock without making calls (the clock says how long)."""
        if self._pace_until is not None and now >= self._pace_until:
            self._pace_until = None
        if self._pace_until is None and self._ready and now >= self._next_pace_check:
            self._next_pace_check = now + PACE_CHECK_S
            stop = self.clock.throttle()
            if stop > 0:
                self._pace_until = now + stop
                self.pace_stops += 1

    def _pump(self, now, connected):
        """Move bytes along both lines at the UART's pace; block the VM while it waits on its TX FIFO.

        The ESP32's stdout writer puts what fits into the 128-byte FIFO and, while bytes remain,
        sleeps until the next FreeRTOS tick (10 ms grid) before it tries again."""
        uart = self._uart
        if self._out and (self._tx_resume is None or now >= self._tx_resume):
            room = len(self._out) if uart.rate is None else uart.tx_room()
            if room:
                uart.device_sent(bytes(self._out[:room]), now)
                del self._out[:room]
            self._tx_resume = self._next_rtos_tick(now) if self._out else None
        sent = uart.tx_due(now)
        if sent:
            uart.tx_lost += self._user.write(sent) if connected else len(sent)
        if not self._ready:
            uart.hold_rx(now)  # booting: host bytes wait until the VM can take Ctrl-C as KeyboardInterrupt
        elif uart.rx:
            data = uart.rx_due(now)
            if data:
                kept, _ = uart.receive(data, inq(self._vm_slave))
                if CTRL_C in kept:
                    self._ctrl_c(kept)
                elif kept:
                    os.write(self._vm_master, kept)
        tx_blocked = self._tx_blocked()
        blocked = tx_blocked or self._pace_until is not None
        if blocked != self._stopped and self._proc and self._proc.returncode is None:
            try:
                os.kill(self._proc.pid, signal.SIGSTOP if blocked else signal.SIGCONT)
                self._stopped = blocked
                self.tx_stalls += blocked and tx_blocked
            except ProcessLookupError:
                pass

    def _tx_blocked(self):
        """The VM waits on its TX FIFO: what it wrote is still queued (it is stopped meanwhile)."""
        return self._tx_resume is not None or (not self._uart.tx_room() and inq(self._vm_master) > 0)

    def _next_rtos_tick(self, now):
        """The next FreeRTOS tick after `now` (virtual clock: the grid runs at --speed)."""
        tick = RTOS_TICK_S / (self.speed or 1)
        return self._rtos0 + (int((now - self._rtos0) / tick) + 1) * tick

    def _ctrl_c(self, data):
        """Hand the VM input holding 0x03 as an ESP32 takes it: a KeyboardInterrupt in code that runs
        with Ctrl-C enabled (the 0x03 taken out, as the ESP32's UART interrupt takes it), data at a
        prompt, in a paste, or under micropython.kbd_intr(-1).

        The tty never turns 0x03 into a signal (VINTR off): the supervisor sends vm_main's
        KEYBOARD_INTERRUPT, which marks a KeyboardInterrupt pending as an ESP32 does. Whether code
        runs with Ctrl-C enabled shows in /proc: the VM catches SIGINT exactly then. The VM is held
        (stopped) while that is read and the signal sent, so a script that ends meanwhile cannot
        take an interrupt meant for it to the prompt."""
        with self._vm_held():
            caught = self._sigint_caught()  # True, False, or None: unknown (no /proc)
            if caught is not False:
                try:
                    os.kill(self._proc.pid, self._kbd_signal)
                except ProcessLookupError:
                    pass
                if caught:  # the UART interrupt takes the 0x03 (unknown: it goes in too, for a prompt)
                    data = data.replace(bytes([CTRL_C]), b"")
            if data:
                os.write(self._vm_master, data)
        if caught is not False and self._stopped and not self._tx_blocked():
            try:  # stopped to keep the board's pace: let it take the interrupt now (stopped again if it must)
                os.kill(self._proc.pid, signal.SIGCONT)
                self._stopped = False
            except ProcessLookupError:
                pass

    @contextlib.contextmanager
    def _vm_held(self):
        """The VM stopped (SIGSTOP, and seen stopped in /proc) for the block; as it was after."""
        proc = self._proc
        alive = proc is not None and proc.returncode is None
        hold = alive and not self._stopped  # else stopped already (paced), or sent SIGSTOP just now
        try:
            if hold:
                os.kill(proc.pid, signal.SIGSTOP)
            end = time.monotonic() + 0.05
            while alive and self._vm_state() not in ("T", "t", "Z", "X", "") and time.monotonic() < end:
                time.sleep(0.0001)
        except ProcessLookupError:
            hold = False
        try:
            yield
        finally:
            if hold:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    def _vm_state(self):
        """The VM's scheduler state letter (R, S, T, Z, ...) from /proc, '' if unknown."""
        try:
            with open(f"/proc/{self._proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, AttributeError):
            return ""

    def _vm_syscall(self):
        """(syscall number, first argument) the VM is blocked in, ("running",) or () (Linux /proc)."""
        try:
            with open(f"/proc/{self._proc.pid}/syscall") as f:
                return tuple(f.read().split()[:2])
        except (OSError, AttributeError):
            return ()

    def _wedged(self, now):
        """A single-threaded VM blocked on a futex can never wake: the unix port's SIGINT handler
        jumped out of code that held a lock (an ESP32 defers the interrupt and cannot hang so).
        True once it has been so for WEDGE_S: the supervisor then resets it, as a watchdog would."""
        if now < self._next_wedge_check or not self._proc or self._proc.returncode is not None:
            return False
        self._next_wedge_check = now + WEDGE_S / 4
        stuck = self._vm_syscall()[:1] == ("202",) and not self._stopped
        if stuck:
            try:
                with open(f"/proc/{self._proc.pid}/status") as f:
                    stuck = any(line.split() == ["Threads:", "1"] for line in f)
            except OSError:
                stuck = False
        if not stuck:
            self._wedged_since = None
            return False
        if self._wedged_since is None:
            self._wedged_since = now
        return now - self._wedged_since >= WEDGE_S

    def _sigint_caught(self):
        """Does the VM catch SIGINT now? It does while it runs code with Ctrl-C enabled; at a prompt
        or under micropython.kbd_intr(-1) SIGINT is at its default action. /proc tells (Linux); None: unknown."""
        try:
            with open(f"/proc/{self._proc.pid}/status") as f:
                masks = dict(line.split(":", 1) for line in f if line.startswith(("SigCgt", "SigIgn")))
        except (OSError, ValueError, AttributeError):
            return None if not os.path.isdir("/proc/self") else False
        handled = int(masks.get("SigCgt", "0"), 16) | int(masks.get("SigIgn", "0"), 16)
        return bool(handled & (1 << (signal.SIGINT - 1)))

    # -- ends of a VM --------------------------------------------------------------
    def _kill_vm(self):
        if self._proc and self._proc.returncode is None:
            try:
                os.kill(self._proc.pid, signal.SIGKILL)
                os.kill(self._proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _vm_ended(self, now):
        code = self._proc.wait()
        while True:  # everything it printed goes out before the reboot text
            try:
                data = os.read(self._vm_master, 4096)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self._out += self._console.feed(data, now)
        self._out += self._console.flush(now, force=True)
        self._retire_vm()
        request, self._request = self._request, None
        if not self._ready and request is None:
            self.failed = f"the MicroPython VM exited while booting (code {code}); its output is on the port"
            self.log(self.failed)
            self._proc = None
            return
        if request == "reset":
            self._hard_reset(SOFT_RESET, "machine.reset()")
        elif request == "wedged":
            self.wedges += 1
            self._out += (b"\r\nGuru Meditation Error: Core  1 panic'ed (Interrupt wdt timeout on CPU1: the MicroPython "
                          b"VM deadlocked, a Ctrl-C cut into it holding a lock)\r\n\r\nRebooting...\r\n")
            self._hard_reset(SOFT_RESET, "the VM deadlocked")
        elif request == "wdt":
            self._hard_reset(WDT_RESET, "WDT")
        elif request == "brownout":  # esp_reset_reason() BROWNOUT: reset_cause() PWRON_RESET (ports/esp32/modmachine.c)
            self._out += BROWNOUT
            self.board.power_on()
            self._hard_reset(PWRON_RESET, "brownout", rst=ROM_RESET[SOFT_RESET], restarted=True)
        elif request == "soft_reset" or code >= 0:
            self._soft_reboot()
        else:
            self.crashes += 1
            why = f"killed by {signal.Signals(-code).name}"
            self._out += f"\r\nGuru Meditation Error: Core  1 panic'ed (the MicroPython VM was {why})\r\n\r\nRebooting...\r\n".encode()
            self._hard_reset(SOFT_RESET, f"VM {why}")

    def _retire_vm(self):
        bus = self._bus
        if bus.thread:
            bus.thread.join(2)
        self.clock.detach()
        self._bus_ops += bus.ops
        bus.close()
        self._bus = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _hard_reset(self, cause, why, rst=None, restarted=False):
        """The ESP32 restarts; restarted: the board has already been told (a brown-out powers the IMU off too)."""
        if not restarted:
            self.board.restart()
        self.hard_resets += 1
        self._rtc_us += int(self.clock.now())
        self._wdt = None
        self.log(f"hard reset ({why})")
        self._power_on(cause, rst)

    def _wdt_expired(self):
        if not self._wdt:
            return False
        timeout_ms, fed = self._wdt
        if self.speed is None:
            return time.monotonic() - fed > timeout_ms / 1000
        return self.clock.now() - fed > timeout_ms * 1000

    def _wdt_reset(self, now):
        ms = int(self.clock.now()) // 1000
        self._out += (b"E (%d) task_wdt: Task watchdog got triggered. The following tasks did not reset the watchdog in time:\r\n"
                      b"E (%d) task_wdt:  - mp_task (CPU 1)\r\n\r\nRebooting...\r\n") % (ms, ms)
        self._request = "wdt"
        self._wdt = None
        self._kill_vm()

    def _teardown(self):
        self._user.close()
        if self._proc and self._proc.returncode is None:
            self._kill_vm()
            self._proc.wait()
        if self._bus:
            self._retire_vm()
        for name in ("_vm_master", "_vm_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            setattr(self, name, None)
            os.close(fd)
