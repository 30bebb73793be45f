"""A Ctrl-C storm against a board's serial port: thousands of 0x03 at random moments.

Three kinds of moment, as a user makes them: a busy script that mpremote exec/run started (raw-paste,
the VM's tty raw), a soft reboot (boot.py, main.py importing the firmware), and an mpremote killed
in the middle of `exec` (the next mpremote must interrupt what it left running). Every round must end
at a prompt; `storm` returns what it saw, the stop latencies included (tests/test_sim.py asserts,
benchmarks/bench_ctrl_c.py prints the figures).
"""

import signal
import subprocess
import sys
import time

import serial

BUSY = (  # what a script can be doing when the Ctrl-C lands
    "n = 0\nwhile True:\n    n += 1\n",
    "import time\nwhile True:\n    time.sleep_ms(1)\n",
    "import machine\na = machine.ADC(machine.Pin(34))\nwhile True:\n    a.read_u16()\n",
    "import machine\ni = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))\n"
    "while True:\n    i.readfrom_mem(0x68, 0x3B, 14)\n",
    "while True:\n    print('spam')\n",
    "import gc\nwhile True:\n    gc.collect()\n",
    "k = []\nwhile True:\n    k.append(bytearray(100))\n    if len(k) > 100:\n        k = []\n",
)


class Stuck(AssertionError):
    pass


class Console:
    """A serial port read as a stream: until() consumes through a pattern and keeps what came after."""

    def __init__(self, ser):
        self.ser, self.buf = ser, b""

    def until(self, pattern, timeout):
        end, seen = time.monotonic() + timeout, 0
        while pattern not in self.buf[seen:]:
            if time.monotonic() > end:
                raise Stuck(f"no {pattern!r} within {timeout} s: {self.buf[-300:]!r}")
            seen = max(0, len(self.buf) - len(pattern))
            self.buf += self.ser.read(self.ser.in_waiting or 1)
        cut = self.buf.index(pattern, seen) + len(pattern)
        got, self.buf = self.buf[:cut], self.buf[cut:]
        return got

    def drop(self):
        self.ser.reset_input_buffer()
        self.buf = b""


def _burst(ser, rng, low, high):
    """low..high 0x03 bytes in small writes a few ms apart; how many were sent."""
    n = rng.randint(low, high)
    left = n
    while left:
        k = min(left, rng.randint(1, 12))
        ser.write(b"\x03" * k)
        left -= k
        time.sleep(rng.uniform(0, 0.004))
    return n


def _prompt(con, timeout=30):
    """Ctrl-C (and Ctrl-B, out of a raw REPL) until the friendly REPL's prompt: main.py may start
    again after a reset, or a burst's last bytes land while a reboot prints."""
    end = time.monotonic() + timeout
    con.drop()
    while True:
        con.ser.write(b"\r\x03\x02")
        try:
            con.until(b">>> ", min(2, max(0.1, end - time.monotonic())))
            return
        except Stuck:
            if time.monotonic() > end:
                raise Stuck(f"no prompt within {timeout} s: {con.buf[-300:]!r}") from None


def busy_rounds(con, rng, rounds, stats):
    """Paste a busy script as mpremote exec does (raw-paste), let it run, storm it: it must stop."""
    ser = con.ser
    for r in range(rounds):
        con.drop()
        ser.write(b"\r\x01")
        con.until(b"raw REPL; CTRL-B to exit\r\n>", 10)
        ser.write(b"\x05A\x01")
        con.until(b"R\x01", 5)
        ser.write(BUSY[r % len(BUSY)].encode() + b"\x04")
        con.until(b"\x04", 10)  # the paste is in: it compiles and runs
        time.sleep(rng.uniform(0.05, 0.5))
        con.drop()  # a printing script's backlog
        start = time.monotonic()
        ser.write(b"\x03")
        stats["sent"] += 1 + _burst(ser, rng, 20, 200)
        con.until(b"KeyboardInterrupt", 15)
        stats["stop_s"].append(time.monotonic() - start)
        con.until(b"\x04>", 10)  # the raw REPL's end of output: it waits for the next script
        ser.write(b"\r\x02")
        con.until(b">>> ", 10)


def reboot_rounds(con, rng, rounds, stats):
    """Soft reboots (boot.py, main.py importing and starting the firmware) cut at random moments."""
    for r in range(rounds):
        con.ser.write(b"\r\x04")
        time.sleep(rng.uniform(0.0, 0.8))
        stats["sent"] += _burst(con.ser, rng, 20, 200)
        _prompt(con)
        stats["reboots"] += 1


def mpremote_rounds(port, rng, rounds, stats):
    """mpremote exec of a busy loop killed with Ctrl-C (mpremote exits and leaves it running): the next
    mpremote call interrupts it (its own 0x03) and works."""
    for r in range(rounds):
        proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", port, "exec", BUSY[r % len(BUSY)]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 2.0))  # mpremote starts (~0.5 s), pastes, the loop runs
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "exec", "print(6 * 7)"],
                             capture_output=True, text=True, timeout=60)
        if out.stdout.strip() != "42":
            raise Stuck(f"mpremote after a killed exec: rc {out.returncode}, {out.stdout!r} {out.stderr!r}")
        stats["mpremote_s"].append(time.monotonic() - start)
        stats["sent"] += 1


def storm(port, rng, busy=21, reboots=10, mpremotes=3):
    """All three kinds, on a board at its friendly REPL or running main.py; the figures seen."""
    stats = {"sent": 0, "stop_s": [], "reboots": 0, "mpremote_s": []}
    with serial.Serial(port, timeout=0.05) as ser:
        con = Console(ser)
        _prompt(con)
        busy_rounds(con, rng, busy, stats)
        reboot_rounds(con, rng, reboots, stats)
    mpremote_rounds(port, rng, mpremotes, stats)
    return stats
