"""The virtual Gen0 against the real mpremote, pyserial and the real MicroPython VM: no mocks.

What must hold is what an ESP32 on a USB serial port does: boot text and banner,
friendly/raw REPL, raw-paste, soft reset running boot.py/main.py, Ctrl-C, the
260-byte receive buffer, the baud-rate TX, and pins wired to the physics.
"""

import os
import pty
import random
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import serial

from host.errors import UserError
from host.sim import VirtualGen0
from host.sim import vm as sim_vm
from host.sim.bus import OPS, REPLY, REQUEST
from tests.helpers import expect, expect_maybe, mpremote

ESP32_BANNER = re.compile(rb"MicroPython v\d+\.\d+\.\d+ on \S+; Generic ESP32 module with ESP32\r\nType \"help\(\)\" for more information\.\r\n")


def run_script(port, tmp_path, code):
    script = tmp_path / "script.py"
    script.write_text(code)
    return mpremote(port, "run", str(script))


@pytest.fixture
def port(sim):
    with serial.Serial(sim.port, timeout=0.05) as ser:
        ser.write(b"\x02")  # Ctrl-B: to the friendly REPL, which prints its banner
        data = expect(ser, b"information.\r\n>>> ")
        while data:  # the power-on text may still be on its way: wait for quiet
            time.sleep(0.15)
            data = ser.read(4096)
        ser.rest = b""
        yield ser


def test_hard_reset_prints_rom_text_and_esp32_banner(sim, port):
    port.write(b"import machine; machine.reset()\r")
    out = expect(port, b">>> ")
    assert b"rst:0xc (SW_CPU_RESET)" in out and ESP32_BANNER.search(out), out
    assert b"linux" not in out
    port.write(b"import machine, os, time; print(machine.reset_cause(), os.getcwd(), os.listdir(), time.ticks_ms() < 3000)\r")
    assert b"5 / [] True" in expect(port, b"True\n>>> ")  # SOFT_RESET as esp_restart() reports; empty flash
    assert sim.hard_resets == 1


@pytest.mark.slow
def test_mpremote_fs_cp_both_ways_ls_run_exec(sim, tmp_path):
    payload = bytes(range(256)) * 6 + b"end"
    (tmp_path / "blob.bin").write_bytes(payload)
    assert mpremote(sim.port, "fs", "ls").strip() == "ls :"
    mpremote(sim.port, "fs", "cp", str(tmp_path / "blob.bin"), ":blob.bin")
    assert (sim.flash_dir / "blob.bin").read_bytes() == payload
    assert f"{len(payload)} blob.bin" in mpremote(sim.port, "fs", "ls")
    mpremote(sim.port, "fs", "cp", ":blob.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == payload
    (tmp_path / "greet.py").write_text("def hi():\n    return 'hi from /lib'\n")
    mpremote(sim.port, "fs", "mkdir", "lib", "+", "fs", "cp", str(tmp_path / "greet.py"), ":lib/greet.py")
    assert "hi from /lib" in mpremote(sim.port, "exec", "import greet; print(greet.hi())")
    assert "__main__ 42" in run_script(sim.port, tmp_path, "print(__name__, 6 * 7)\n")
    assert "/ True" in mpremote(sim.port, "exec", "import os; print(os.getcwd(), 'blob.bin' in os.listdir('/'))")


def test_soft_reset_runs_boot_then_main_and_ctrl_c_interrupts_main(sim, port):
    (sim.flash_dir / "boot.py").write_text("print('BOOT ran')\nopen('log', 'a').write('boot\\n')\n")
    (sim.flash_dir / "main.py").write_text(
        "import time\nopen('log', 'a').write('main\\n')\nprint('MAIN ran')\ndef spin():\n    while True:\n        time.sleep_ms(5)\nspin()\n")
    port.write(b"\x04")  # Ctrl-D at the friendly prompt: soft reset
    out = expect(port, b"MAIN ran")
    assert b"MPY: soft reboot\r\nBOOT ran\nMAIN ran" in out
    port.write(b"\x03")
    out = expect(port, b">>> ")
    assert (b"Traceback (most recent call last):\n  File \"main.py\", line 7, in <module>\n"
            b"  File \"main.py\", line 6, in spin\nKeyboardInterrupt: \nMicroPython v") in out, out
    assert ESP32_BANNER.search(out) and b"bootstrap" not in out
    port.close()
    mpremote(sim.port, "soft-reset")  # into the raw REPL: boot.py only
    assert (sim.flash_dir / "log").read_text() == "boot\nmain\nboot\n"
    assert sim.soft_resets == 2


def test_main_py_crash_is_shown_as_micropython_shows_it(sim, port):
    (sim.flash_dir / "main.py").write_text("x = 1\nraise ValueError('boom')\n")
    port.write(b"\x04")
    out = expect(port, b">>> ")
    assert b'Traceback (most recent call last):\n  File "main.py", line 2, in <module>\nValueError: boom\n' in out, out
    port.write(b"x\r")
    assert b"1\n>>> " in expect(port, b"1\n>>> ")  # main.py ran in the REPL's namespace


def test_mpremote_reset_then_resume(sim):
    mpremote(sim.port, "exec", "open('keep.txt', 'w').write('kept')")
    mpremote(sim.port, "reset")  # returns at once; the board resets 100 ms later (a Ctrl-C before then stops it)
    deadline = time.monotonic() + 10
    while sim.hard_resets == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    out = mpremote(sim.port, "resume", "exec", "import machine, time; print(machine.reset_cause(), time.ticks_ms() < 2000, open('keep.txt').read())")
    assert out.split() == ["5", "True", "kept"]
    assert sim.hard_resets == 1


def test_mpremote_repl_in_a_terminal(sim):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", sim.port, "repl"],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = b""

        def wait_for(pattern, timeout=10):
            nonlocal seen
            end = time.monotonic() + timeout
            while pattern not in seen and time.monotonic() < end:
                if select.select([master], [], [], 0.1)[0]:
                    seen += os.read(master, 4096)
            assert pattern in seen, seen

        wait_for(b"Use Ctrl-]")
        os.write(master, b"\r")
        wait_for(b">>> ")
        os.write(master, b"print(6 * 7)\r")
        wait_for(b"42")
        os.write(master, b"\x1d")  # Ctrl-]: leave
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_raw_repl_and_raw_paste_bytes(sim, port):
    port.write(b"\r\x01")
    expect(port, b"raw REPL; CTRL-B to exit\r\n>")
    port.write(b"\x05A\x01")
    header = expect(port, b"R\x01") + expect(port, b"\x01")  # the window size, then a window free
    assert header == b"R\x01\x80\x00\x01"  # supported, window 128 = half the 256-byte buffer
    port.write(b"print('pasted', 1 + 1)\x04")
    out = expect(port, b"\x04>")
    assert out == b"\x04pasted 2\n\x04\x04>", out  # end-of-data ack, stdout, \x04, no error, \x04, prompt
    port.write(b"\x04")  # Ctrl-D on an empty raw line: soft reset, back in the raw REPL
    assert expect(port, b"raw REPL; CTRL-B to exit\r\n>") == b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
    assert sim.mode == "raw"


@pytest.mark.slow
def test_rx_buffer_drops_what_overflows_but_mpremote_works(sim, port, tmp_path):
    port.write(b"\r\x01")
    expect(port, b"raw REPL; CTRL-B to exit\r\n>")
    code = (b"import sys, time, select\ntime.sleep_ms(600)\np = select.poll()\np.register(sys.stdin, select.POLLIN)\n"
            b"n = 0\nwhile p.poll(100):\n    n += len(sys.stdin.buffer.read(1))\nprint('got', n)\n")
    port.write(code + b"\x04")
    expect(port, b"OK")
    port.write(b"a" * 1000)  # 87 ms at 115200, all while the code sleeps
    out = expect(port, b"\x04>", timeout=10)
    got = int(re.search(rb"got (\d+)", out).group(1))
    assert 260 <= got <= 264 and got + sim.rx_dropped == 1000, out  # TIOCINQ lags a write by a few µs
    dropped = sim.rx_dropped
    port.write(b"\r\x02")
    port.close()
    big = os.urandom(4000)
    (tmp_path / "big.bin").write_bytes(big)
    mpremote(sim.port, "fs", "cp", str(tmp_path / "big.bin"), ":big.bin")
    assert (sim.flash_dir / "big.bin").read_bytes() == big
    assert sim.rx_dropped == dropped  # raw-paste flow control: nothing more lost


def test_tx_moves_at_the_baud_rate_and_blocks_the_writer(sim):
    out = mpremote(sim.port, "exec", "import sys, time\nb = b'x' * 64\nt = time.ticks_ms()\nfor i in range(90):\n"
                   "    sys.stdout.buffer.write(b)\n    time.sleep_us(200)\nprint('\\nms', time.ticks_diff(time.ticks_ms(), t))")
    assert out.count("x") == 5760
    ms = int(out.split("ms")[-1])
    assert 450 < ms < 560, ms  # (5760 - 128 in the FIFO) bytes * 10 bits / 115200 baud = 489 ms
    assert sim.counters()["tx_stalls"] > 10


def test_pins_reach_the_board(sim, tmp_path):
    before = sim.board.truth()["joints"][0]["angle_deg"]
    out = run_script(sim.port, tmp_path, """
import machine, time
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
print('scan', i2c.scan(), 'who', hex(i2c.readfrom_mem(0x68, 0x75, 1)[0]))
try:
    i2c.readfrom_mem(0x50, 0, 1)
except OSError as e:
    print('errno', e.errno)
print('elsewhere', machine.I2C(1).scan())
adc = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_11DB)
a = adc.read_u16()
pwm = machine.PWM(machine.Pin(25), freq=50, duty_ns=2000000)
time.sleep_ms(800)
print('adc', a, adc.read_u16(), 'pulse', pwm.duty_ns(), pwm.freq())
for bad in ('machine.Pin(20)', 'machine.ADC(machine.Pin(5))', 'machine.PWM(machine.Pin(36))'):
    try:
        eval(bad)
    except ValueError:
        print('ValueError', bad)
""")
    assert "scan [104] who 0x68" in out and "errno 19" in out and "elsewhere []" in out
    assert out.count("ValueError") == 3
    a0, a1, pulse, freq = (int(x) for x in re.search(r"adc (\d+) (\d+) pulse (\d+) (\d+)", out).groups())
    assert abs(pulse - 2000000) < 310 and freq == 50  # LEDC at 50 Hz: 16-bit duty, 305 ns steps
    after = sim.board.truth()["joints"][0]
    assert after["pulse_us"] == pytest.approx(pulse / 1000)
    assert after["angle_deg"] - before > 35  # 2000 us is ~55 deg past centre
    assert a1 - a0 > 5000  # the pot, through the ADC, follows the joint


def test_ticks_wrap_at_2_30_like_an_esp32(make_sim, tmp_path):
    sim = make_sim(speed=0)
    out = run_script(sim.port, tmp_path, """
import time
time.sleep_us((1 << 30) - 100000 - time.ticks_us())
a = time.ticks_us()
time.sleep_ms(200)
b = time.ticks_us()
print(a, b, time.ticks_diff(b, a), time.ticks_add(a, 200000) <= b, time.ticks_diff(0, (1 << 30) - 1))
""")
    a, b, diff, ordered, one = out.split()
    assert (1 << 30) - 200000 < int(a) < 1 << 30 and int(b) < 200000
    assert 200000 <= int(diff) < 201000 and ordered == "True" and one == "1"  # + the VM's work at an ESP32's pace


@pytest.mark.slow
def test_clock_like_an_esp32_across_resets(make_sim, tmp_path):
    sim = make_sim()
    now = "import time; print(time.ticks_ms(), time.localtime()[:6], time.time(), time.gmtime(0)[:3], time.mktime((2000, 1, 2, 0, 0, 0, 0, 0)))"
    first = mpremote(sim.port, "exec", now).split(maxsplit=1)
    assert first[1].startswith("(2000, 1, 1, 0, 0, ") and first[1].endswith("(2000, 1, 1) 86400\n")
    second = mpremote(sim.port, "exec", now).split(maxsplit=1)  # a soft reset in between: ticks go on
    assert int(second[0]) > int(first[0])
    fast = make_sim(speed=10)
    start = time.monotonic()
    out = mpremote(fast.port, "exec", "import time; t = time.ticks_ms(); time.sleep(3); print(time.ticks_diff(time.ticks_ms(), t))")
    assert 3000 <= int(out) < 3100 and time.monotonic() - start < 2.0  # 3 s of board time in 0.3 s


def test_virtual_clock_is_deterministic(make_sim, tmp_path):
    script = """
import machine, time
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
i2c.writeto_mem(0x68, 0x6B, b'\\x00')
adc = machine.ADC(machine.Pin(35), atten=machine.ADC.ATTN_11DB)
pwm = machine.PWM(machine.Pin(26), freq=50, duty_ns=1450000)
buf = bytearray(14)
out = []
for i in range(40):
    pwm.duty_ns((1100 + 600 * (i // 10 % 2)) * 1000)
    time.sleep_ms(20)
    i2c.readfrom_mem_into(0x68, 0x3B, buf)
    out.append((time.ticks_us(), adc.read_u16(), bytes(buf)))
print(out)
"""
    runs = []
    for seed in (7, 7, 8):
        sim = make_sim(speed=0, seed=seed, cpu_factor=0)  # CPU time free: the board's time is sleeps and calls
        runs.append((run_script(sim.port, tmp_path, script), sim.board.truth()["joints"]))
        sim.stop()
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_kill_pulls_the_cable_and_start_plugs_it_back(sim):
    ser = serial.Serial(sim.port, timeout=0.2)
    old = sim.port
    (sim.flash_dir / "keep.txt").write_text("still here")
    sim.kill()
    assert not os.path.exists(old)
    with pytest.raises(serial.SerialException):
        ser.read(1)
    ser.close()
    sim.start()
    assert sim.wait_ready(10)
    assert mpremote(sim.port, "exec", "print(open('keep.txt').read())").strip() == "still here"


def test_link_replaces_a_stale_symlink_and_goes_away(make_sim, tmp_path):
    link = tmp_path / "gen0"
    link.symlink_to(tmp_path / "nothing-there")
    sim = make_sim(link=str(link))
    assert os.path.realpath(link) == os.path.realpath(sim.port)
    assert mpremote(str(link), "exec", "print('via link')").strip() == "via link"
    sim.stop()
    assert not os.path.lexists(link)
    (tmp_path / "file").write_text("not a link")
    with pytest.raises(UserError, match="not a symlink"):
        make_sim(link=str(tmp_path / "file"))


def test_port_is_exclusive_like_a_serial_device(sim):
    with serial.Serial(sim.port, exclusive=True):
        with pytest.raises(serial.SerialException, match="exclusively lock"):
            serial.Serial(sim.port, exclusive=True)


def test_watchdog_not_fed_hard_resets(sim, port):
    port.write(b"import machine; w = machine.WDT(timeout=200)\r")
    out = expect(port, b"rst:0xc")
    assert b"task_wdt: Task watchdog got triggered" in out
    expect(port, b">>> ")
    port.write(b"import machine; machine.reset_cause()\r")
    expect(port, b"3\n>>> ")  # WDT_RESET


def test_ctrl_c_is_data_while_kbd_intr_is_off(sim, port):
    port.write(b"import micropython, sys, time, select; p = select.poll(); p.register(sys.stdin, select.POLLIN); "
               b"micropython.kbd_intr(-1); time.sleep_ms(400); print(p.poll(0) and sys.stdin.buffer.read(1))\r")
    time.sleep(0.2)
    port.write(b"\x03")
    expect(port, b"b'\\x03'\n>>> ")
    port.write(b"import time; time.sleep(5)\r")
    time.sleep(0.2)
    port.write(b"\x03")  # kbd_intr is back: KeyboardInterrupt
    assert b"KeyboardInterrupt" in expect(port, b">>> ")
    assert sim.crashes == 0


@pytest.mark.slow
def test_ctrl_c_storm_never_desyncs_the_bus(sim, port):
    """KeyboardInterrupt can cut a peripheral call anywhere; later calls must still get their own answers."""
    code = b"""
import machine, time
a = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_11DB)
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
bad = hits = 0
end = time.ticks_add(time.ticks_ms(), 2500)
print('go')
def work():
    global bad
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        v = a.read_u16()
        if i2c.readfrom_mem(0x68, 0x75, 1)[0] != 0x68 or not 0 < v < 65536:
            bad += 1
while time.ticks_diff(end, time.ticks_ms()) > 0:
    try:
        try:
            work()
        except KeyboardInterrupt:
            hits += 1
    except KeyboardInterrupt:
        hits += 1
print('bad', bad, 'hits', hits)
"""
    port.write(b"\x05" + code + b"\x04")  # paste mode
    expect(port, b"go\n", timeout=30)  # pasting echoes and compiles at an ESP32's pace
    for _ in range(60):  # apart by more than a handler takes at an ESP32's pace
        time.sleep(0.012 + (_ % 7) * 0.003)
        port.write(b"\x03")
    out = expect(port, b"hits", timeout=10) + expect(port, b">>> ")
    bad, hits = (int(x) for x in re.search(rb"bad (\d+) hits (\d+)", out).groups())
    assert bad == 0 and hits > 20, out[-200:]


def test_heap_and_bus_speed(sim, tmp_path):
    out = run_script(sim.port, tmp_path, """
import gc, machine, time
gc.collect()
print('free', gc.mem_free())
p = machine.Pin(4)
t = time.ticks_us()
for i in range(2000):
    p.value()
print('trips', 2000 * 1000000 // time.ticks_diff(time.ticks_us(), t))
""")
    free = int(re.search(r"free (\d+)", out).group(1))
    modeled = sim_vm.HEAP_KB * sim_vm.HEAP_SCALE * 1024
    assert modeled <= free < modeled + 8 * 1024, free  # the firmware gets the whole modeled heap
    assert int(re.search(r"trips (\d+)", out).group(1)) > 5000


def test_corrupt_flips_bits_of_device_output(make_sim):
    sim = make_sim(corrupt=0.2, seed=3)
    with serial.Serial(sim.port, timeout=0.2) as ser:
        ser.write(b"\r")
        time.sleep(0.3)
        ser.reset_input_buffer()
        ser.write(b"print('U' * 2000)\r")
        data = b""
        end = time.monotonic() + 5
        while len(data) < 2000 and time.monotonic() < end:
            data += ser.read(4096)
    assert sim.counters()["tx_corrupted"] > 100
    assert 0 < data.count(b"U") < 1900


@pytest.mark.sim  # `host sim` in a child process
def test_host_sim_command_runs_until_sigterm(tmp_path):
    link = tmp_path / "gen0"
    proc = subprocess.Popen([sys.executable, "-m", "host", "sim", "--link", str(link), "--seed", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("virtual Gen0 on /dev/") and str(link) in line, line
        assert mpremote(str(link), "exec", "import sys; print(sys.platform)").strip() == "esp32"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "soft reset" in err and "stopped:" in err, err
    assert not os.path.lexists(link)


def test_bad_setup_gives_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="not a writable directory"):
        VirtualGen0(flash_dir=tmp_path / "file" / "flash")
    with pytest.raises(UserError, match="plant"):
        VirtualGen0(plant=tmp_path / "missing.json")
    proc = subprocess.run([sys.executable, "-m", "host", "sim", "--speed", "-1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: --speed")
    monkeypatch.setattr(sim_vm.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="pip install"):
        VirtualGen0()


def test_bus_ops_match_the_shim():
    """The op table in host/sim/bus.py and the consts in the VM's bus client are one table."""
    text = (sim_vm.SHIM_DIR / "gen0bus.py").read_text()
    consts = dict(re.findall(r"^([A-Z0-9_]+) = const\((\d+)\)", text, re.M))
    assert {k: consts.get(k) for k in OPS} == {k: str(v) for k, v in OPS.items()}
    assert re.search(r"^_HDR = \"(<\w+)\"", text, re.M).group(1) == REQUEST.format
    assert int(re.search(r"^_REPLY_HEAD = const\((\d+)\)", text, re.M).group(1)) == REPLY.size


@pytest.mark.slow
def test_gen0_streams_and_ctrl_c_returns_the_repl(gen0):
    with serial.Serial(gen0.port, timeout=0.1) as ser:
        expect(ser, b"\x7e", timeout=20)  # booting compiles the firmware's .py at an ESP32's pace
        time.sleep(0.5)  # past the hello
        ser.reset_input_buffer()
        start, streamed = time.monotonic(), 0
        while time.monotonic() - start < 2:
            streamed += len(ser.read(4096))
        assert streamed > 2000  # telemetry frames (~4800 B/s at 100 Hz)
        ser.write(b"\x03")
        assert b"KeyboardInterrupt" in expect(ser, b">>> ", timeout=5)
    listing = mpremote(gen0.port, "fs", "ls")
    assert "main.py" in listing and "robot.json" in listing


PACE_SCRIPT = """
import gc, machine, time
vm = machine.bus.time  # the VM's own clock (the host's µs), through the shim's bus: not on a board
def work(n):
    s = 0
    for i in range(n):
        s += i * 3
    return s
def both(n):
    best = None
    for r in range(3):
        t, v = time.ticks_us(), vm.ticks_us()
        work(n)
        board, own = time.ticks_diff(time.ticks_us(), t), vm.ticks_diff(vm.ticks_us(), v)
        if best is None or own < best[1]:
            best = (board, own)
    return best
a = both(20000)
machine.freq(240000000)
b = both(20000)
keep = [[i] for i in range(10000)]  # live objects to mark (a 1 MiB heap): a collection of ~1 ms, not ~0.1
g = None
for r in range(3):  # the least of each: a host that takes the CPU away only makes either longer
    v = vm.ticks_us()
    machine.bus.gc.collect()  # the VM's own collector, timed by the VM's clock
    v = vm.ticks_diff(vm.ticks_us(), v)
    t = time.ticks_us()
    gc.collect()  # through the ESP32's gc: billed on the board's clock (a wait to pay for it is not)
    t = time.ticks_diff(time.ticks_us(), t)
    g = (t, v) if g is None else (min(g[0], t), min(g[1], v))
print('pace', a[0], a[1], b[0], b[1], g[0], g[1])
"""


def pace(sim, tmp_path):
    """(board µs per VM µs at 160 MHz, at 240 MHz, in gc.collect(); wall s, board s of the whole run)."""
    start = time.monotonic()
    out = run_script(sim.port, tmp_path, PACE_SCRIPT)
    wall = time.monotonic() - start
    b160, v160, b240, v240, bgc, vgc = (int(x) for x in re.search(r"pace (.*)", out).group(1).split())
    return b160 / v160, b240 / v240, bgc / max(vgc, 1), wall, (b160 + b240) / 1e6


def test_the_vm_works_at_an_esp32s_pace(make_sim, tmp_path):
    """The VM's own work costs the board ~30x at 240 MHz (~45x at the 160 MHz it boots at), gc.collect()
    ~50x; and the board's pace is real time: the loops take as long on the wall clock (throttled).
    Wide bounds: CPU time on a shared host is noisy, and a loaded host only makes the VM's own µs longer."""
    r160, r240, rgc, wall, board_s = pace(make_sim(heap_kb=1024), tmp_path)  # room for a collection that counts
    assert 12 < r240 < 60, r240
    assert 1.2 < r160 / r240 < 1.9, (r160, r240)
    assert rgc > r240 * 0.8, (rgc, r240)
    assert wall > 0.7 * board_s, (wall, board_s)  # not 30x faster than the board it claims to be


def test_cpu_host_is_the_vms_own_speed(make_sim, tmp_path):
    r160, r240, _, _, _ = pace(make_sim(cpu="host", heap_kb=1024), tmp_path)
    assert 0.5 < r160 < 2 and 0.5 < r240 < 2, (r160, r240)


def test_ctrl_c_stops_code_mpremote_started_from_the_raw_repl(sim, port):
    """mpremote exec/run paste code in raw-paste mode, where the VM keeps its tty raw (no SIGINT from
    the tty): 0x03 must still interrupt what runs, within 0.5 s, and mpremote must work after."""
    port.write(b"\r\x01")
    expect(port, b"raw REPL; CTRL-B to exit\r\n>")
    port.write(b"\x05A\x01")
    assert expect(port, b"R\x01\x80\x00\x01", timeout=2)  # raw-paste, window 128
    port.write(b"n = 0\nwhile True:\n    n += 1\n\x04")
    expect(port, b"\x04", timeout=2)
    time.sleep(0.5)
    start = time.monotonic()
    port.write(b"\x03")
    out = expect(port, b"KeyboardInterrupt", timeout=3)
    assert time.monotonic() - start < 3, out  # ~0.05 s on a quiet machine; no wall-clock figure asserted
    if b"\x04>" not in out:
        expect(port, b"\x04>")
    port.write(b"\r\x02")
    port.close()
    assert mpremote(sim.port, "exec", "print(6 * 7)").strip() == "42"


def prompt_after_boot(buf):
    """The REPL's prompt after the last boot's text: the "\\r" before each Ctrl-D echoes a prompt of its own,
    and a storm that stopped at that one would leave main.py booting for the next test step."""
    boot = max(buf.rfind(b"soft reboot"), buf.rfind(b"Rebooting..."))
    return boot >= 0 and buf.rfind(b">>> ") > boot


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_a_boot_never_wedges_the_board(gen0):
    """Ctrl-C at random moments of soft reboots (main.py importing the firmware): the prompt always
    comes back. The unix VM's SIGINT handler can jump out of code holding a lock (an ESP32 defers
    the interrupt); the supervisor sees a VM that can never wake and resets it, as a watchdog would."""
    rng = random.Random(3)
    with serial.Serial(gen0.port, timeout=0.05) as ser:
        for _ in range(10):  # main.py may start after the first Ctrl-C (booting): as a user would, press it again
            ser.write(b"\x03")
            if b">>> " in expect_maybe(ser, b">>> ", timeout=2):
                break
        for i in range(30):
            ser.write(b"\r\x04")  # soft reboot: boot.py, main.py
            time.sleep(rng.uniform(0.0, 0.5))
            ser.write(b"\x03" * rng.randint(1, 3))
            buf, end, nudge = b"", time.monotonic() + 30, time.monotonic() + 2
            while not prompt_after_boot(buf):
                assert time.monotonic() < end, f"no prompt after try {i}: {buf[-300:]!r}"
                buf += ser.read(4096)
                if time.monotonic() > nudge:  # main.py started after the Ctrl-C, or again after a reset
                    ser.write(b"\x03")
                    nudge = time.monotonic() + 2
    try:
        out = mpremote(gen0.port, "exec", "print(6 * 7)")
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mpremote hung after the storm: VM in {gen0._vm_syscall()}, {gen0.mode} REPL, "
                             f"{gen0.counters()}, mpremote said {e.stdout!r} {e.stderr!r}") from None
    assert out.strip() == "42"


BOARD_FACTS = """
import sys, os, time, machine, gc, select, esp, esp32, network
print(sys, os, time, machine, gc, select, esp, esp32, network)
print(sys.implementation.version, sys.maxsize, esp.flash_size(), esp32.raw_temperature())
sta, ap = network.WLAN(network.STA_IF), network.WLAN(network.AP_IF)
print(sta is network.WLAN(), sta.active(), sta.config('mac') == machine.unique_id(), ap.config('essid'))
try:
    sta.connect('home', 'secret')
except OSError as e:
    print('inactive:', e)
sta.active(True)
sta.connect('home', 'secret')
print(sta.scan(), sta.status() == network.STAT_CONNECTING, sta.isconnected())
for bad in ("time.sleep('a')", "time.sleep_ms(1.5)", "import gen0bus"):
    try:
        exec(bad)
    except Exception as e:
        print(type(e).__name__ + ':', e)
"""


@pytest.mark.slow
def test_the_board_answers_as_an_esp32_does(sim, tmp_path):
    """What a user pokes at first shows an ESP32, not the unix VM under it (issue 10, point 9)."""
    assert "<VfsLfs2>" in mpremote(sim.port, "df")
    out = run_script(sim.port, tmp_path, BOARD_FACTS).splitlines()
    names = ("sys", "os", "time", "machine", "gc", "select", "esp", "esp32", "network")
    assert out[0] == " ".join(f"<module '{n}'>" for n in names), out[0]  # no host path, no wrapper class
    assert out[1] == "(1, 29, 0, '') 2147483647 4194304 128", out[1]  # a release build; 31-bit small ints
    assert out[2].startswith("True False True ESP_"), out[2]  # one STA object; the MAC is unique_id()
    assert out[3] == "inactive: Wifi Not Started"
    assert out[4] == "[] True False"  # no access point in range: it keeps trying, as a board does
    assert out[5:] == ["TypeError: can't convert str to float", "TypeError: can't convert float to int",
                       "ImportError: no module named 'gen0bus'"]
    for crash in ("import network; network.WLAN().connect('x')", "import machine; machine.Pin(99)",
                  "import time; time.sleep_us('x')"):  # errors raised by the emulation's own code
        proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", sim.port, "exec", crash],
                              capture_output=True, text=True, timeout=60)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 1 and 'File "<stdin>", line 1, in <module>' in text, text
        assert str(sim_vm.SHIM_DIR) not in text and "shim" not in text and text.count("File ") == 1, text


@pytest.mark.slow
def test_a_storm_of_ctrl_c_never_wedges_the_board(gen0):
    """Thousands of 0x03 at random moments: in busy scripts that mpremote-style raw-paste started
    (tight loops, sleeps, I2C, ADC, printing, gc, allocation), in soft reboots, after an mpremote
    killed mid-exec. Every script stops, every round ends at a prompt, and mpremote works after.
    Stop latencies are figures (benchmarks/bench_ctrl_c.py); the bound here only catches a hang."""
    from tests.ctrl_c_storm import Stuck, storm

    try:
        stats = storm(gen0.port, random.Random(10))
    except Stuck as e:
        raise AssertionError(f"{e} (VM in {gen0._vm_syscall()}, {gen0.mode} REPL, {gen0.counters()})") from None
    assert stats["sent"] >= 2000 and stats["reboots"] == 10 and len(stats["mpremote_s"]) == 3, stats
    assert max(stats["stop_s"]) < 10, stats["stop_s"]
    assert mpremote(gen0.port, "exec", "print(6 * 7)").strip() == "42"
